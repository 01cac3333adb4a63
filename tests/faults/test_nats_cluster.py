"""One node of a 3-node NATS cluster killed (SIGKILL) mid-call; CALLS and AUDIO replicated R3.

The node killed leads both streams (the worst one: every acknowledged event and every frame of
caller audio went through it; AUDIO's leadership is moved there first). Clients connected to it
move to another node (they were given all three URLs), the two others elect new leaders (4 to
9 s: Raft's election timeout), events are retried until acknowledged, and the call goes on to
its normal end, the edge's hold phrase covering the wait.

Caller audio is published without acknowledgement (no round trip on the hot path), so what the
caller says while AUDIO has no leader is not stored and the STT never hears it: the STT worker
sees the call-audio time jump, publishes a `gap` (audio_lost), and the bot asks the caller to
repeat rather than wait for words that will never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fault_caller import CallerResult
from fault_check import CallRecord
from fault_run import SAMPLE, Running, Systems, baseline, connect, judge, place_call

from events.bus import Bus
from voicebot.servers import NatsCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def leader(bus: Bus, stream: str = "CALLS", timeout_s: float = 5.0) -> str:
    info = await bus.nc.jsm(timeout=timeout_s).stream_info(stream)
    assert info.config.num_replicas == 3 and info.cluster is not None
    return str(info.cluster.leader or "")


async def one_leader_for_both(bus: Bus) -> str:
    """Move AUDIO's leadership until the node leading CALLS leads it too."""
    async with asyncio.timeout(30):
        while True:
            calls, audio = await leader(bus, "CALLS"), await leader(bus, "AUDIO")
            if calls and calls == audio:
                return calls
            if audio:
                with contextlib.suppress(Exception):
                    await bus.nc.request("$JS.API.STREAM.LEADER.STEPDOWN.AUDIO", b"", timeout=2)
            await asyncio.sleep(0.5)


@dataclass
class Outcome:
    result: CallerResult
    record: CallRecord
    reference: CallRecord
    leaders: list[str]
    elected_s: float | None


async def call_through_a_node_kill(running: Running) -> Outcome:
    nodes = running.nats
    assert isinstance(nodes, NatsCluster)
    async with connect(running) as bus:
        _, reference = await baseline(running, bus, SAMPLE)
        leaders = [await one_leader_for_both(bus)]
        index = int(leaders[0].rsplit("-", 1)[1]) - 1
        killed: dict[str, float] = {}

        async def kill_the_leader() -> None:
            killed["at"] = time.monotonic()
            await asyncio.to_thread(nodes.kill, index)
            # Until the two others have elected a new CALLS leader (writable again).
            async with asyncio.timeout(15):
                while True:
                    with contextlib.suppress(Exception):
                        now = await leader(bus, timeout_s=0.25)
                        if now and now != leaders[0]:
                            leaders.append(now)
                            killed["elected"] = time.monotonic()
                            return
                    await asyncio.sleep(0.05)

        try:
            result, record = await place_call(
                running,
                bus,
                SAMPLE,
                call_id=str(uuid.uuid4()),
                hooks={"caller_speech:2": kill_the_leader},
            )
        finally:
            await asyncio.to_thread(nodes.start_node, index)
        elected = killed.get("elected")
        return Outcome(
            result, record, reference, leaders, None if elected is None else elected - killed["at"]
        )


@pytest.fixture(scope="module")
def node_killed(systems: Systems) -> Iterator[Outcome]:
    """One call through the kill, shared by this module's tests (a call costs ~20 s)."""
    yield asyncio.run(call_through_a_node_kill(systems.get("cluster")))


@pytest.mark.timeout(180)
def test_the_leader_node_killed_mid_call_the_call_goes_on(node_killed: Outcome) -> None:
    o = node_killed
    problems = judge(
        "NATS cluster: node leading CALLS and AUDIO kill -9 (caller speech)",
        SAMPLE,
        o.result,
        o.record,
        o.reference,
        recover_s=o.elected_s,
        recover_what="kill -> new CALLS leader",
        repeats_for_lost_audio=True,
    )
    assert problems == [], "\n".join(problems)
    assert o.elected_s is not None and len(o.leaders) == 2, o.leaders


@pytest.mark.timeout(180)
def test_caller_audio_lost_in_the_election_is_reported_and_the_bot_asks_again(
    node_killed: Outcome,
) -> None:
    record = node_killed.record
    lost = record.caller_audio_lost()
    gaps = record.lost_audio_gaps()
    if lost == 0:
        assert gaps == []  # nothing lost this time: nothing to report
        return
    # Every lost stretch is said: the gaps cover at least the audio the stream lacks, and a
    # lost message held at least one 20 ms frame whatever AUDIO_IN_BATCH_MS is.
    covered = sum(g.to_s - g.from_s for g in gaps)
    assert gaps and covered >= lost * 0.020 - 0.05, (lost, gaps)
    assert "repeat" in record.says(), record.timeline()
