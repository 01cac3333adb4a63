"""The edge killed (SIGKILL) mid-call: the workers let the call go within a bound.

The edge dies with the TCP connection (Asterisk would run the dialplan's next priority), so the
call's `ended` is never published. Each worker holding the call hears the edge's liveness beats
(`voicebot.edge.alive`) stop and releases it (acks its claim) once the edge has been silent for
the bound (5 s): no STT socket, brain timer or TTS queue is held for a dead call. Inspected from
the outside: each kind's claim consumer has no message pending an ack any more.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest
from fault_check import CallRecord
from fault_run import ROWS, SAMPLE, Row, Running, place_call

from events.bus import Bus
from events.streams import CALLS, CLAIMS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RELEASE_BOUND_S = 10.0  # liveness bound 5 s, checked every second, after a bound of connection


async def held(bus: Bus) -> dict[str, int]:
    """Claims pending an ack, per worker kind (calls some instance still holds)."""
    out = {}
    for service, claim in CLAIMS.items():
        info = await bus.js.consumer_info(CALLS, claim.durable)
        out[service] = info.num_ack_pending
    return out


@pytest.mark.timeout(120)
async def test_edge_killed_mid_call_workers_release_it(
    edge_alone: Running, edge_alone_bus: Bus
) -> None:
    system = edge_alone.system
    [edge_pid] = system.pids("edge")
    killed: dict[str, float] = {}
    holding: list[dict[str, int]] = []

    async def kill_the_edge() -> None:
        holding.append(await held(edge_alone_bus))
        killed["at"] = time.monotonic()
        system.signal(edge_pid, signal.SIGKILL)

    result, record = await place_call(
        edge_alone,
        edge_alone_bus,
        SAMPLE,
        call_id=str(uuid.uuid4()),
        hooks={"bot_speech:2": kill_the_edge},
        final_wait_s=1.0,
        settle_s=0.5,
    )
    assert "at" in killed, "the edge was never killed"
    assert holding == [dict.fromkeys(CLAIMS, 1)]  # every kind held the call when the edge died
    released_after = None
    async with asyncio.timeout(RELEASE_BOUND_S + 5):
        while True:
            if sum((await held(edge_alone_bus)).values()) == 0:
                released_after = time.monotonic() - killed["at"]
                break
            await asyncio.sleep(0.1)
    ROWS.append(
        Row(
            "edge kill -9 (bot speech)",
            result.longest_wait,
            False,  # the connection died with the edge: Asterisk goes on in the dialplan
            0,
            len(record.duplicates()),
            released_after,
            "kill -> every worker released the call",
            record.edge_holds(),
        )
    )
    assert system.edge_exit == -signal.SIGKILL
    assert record.ended() is None  # nobody could say it ended: the edge died
    assert record.duplicates() == []
    assert released_after is not None and released_after <= RELEASE_BOUND_S, released_after
    # Released for good (acked), not handed to another instance: nobody claims it again.
    await asyncio.sleep(2.5)
    after = await CallRecord.load(edge_alone_bus, result.call_id)
    assert {s: len(after.claims(s)) for s in CLAIMS} == dict.fromkeys(CLAIMS, 1)
