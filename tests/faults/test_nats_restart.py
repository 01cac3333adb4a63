"""The single NATS node killed (SIGKILL) mid-call and restarted 2 s later, on its file store.

Every process loses its connection at once, in the middle of the caller's line. The services
reconnect; events published meanwhile are retried with their Nats-Msg-Id until acknowledged;
stream tails re-create their consumers from the last message they handed over; the call's
owners keep their claims (their heartbeats resume within ack_wait, or the call is redelivered
to the same instance). The line spoken across the restart is transcribed at once (it took 15 s
before the tails), the dialog goes on, and the caller never waits more than 3 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from fault_run import SAMPLE, Running, baseline, judge, place_call, texts

from events import schemas
from events.bus import Bus
from voicebot.servers import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOWN_S = 2.0


@pytest.mark.timeout(150)
async def test_nats_killed_and_restarted_mid_call(nats_alone: Running, nats_alone_bus: Bus) -> None:
    _, reference = await baseline(nats_alone, nats_alone_bus, SAMPLE)
    server = nats_alone.nats
    assert isinstance(server, NatsServer)
    times: dict[str, float] = {}

    async def kill_and_restart() -> None:
        times["kill"] = time.time()
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(server.start)
        times["up"] = time.time()

    result, record = await place_call(
        nats_alone,
        nats_alone_bus,
        SAMPLE,
        call_id=str(uuid.uuid4()),
        hooks={"caller_speech:2": kill_and_restart},
    )
    # The line spoken across the restart: from the server back to its transcript.
    line = texts(SAMPLE)[1]
    final = next(f for f in record.of(schemas.Final) if f.text == line)
    problems = judge(
        f"NATS single node kill -9, back after {DOWN_S:.0f} s (caller speech)",
        SAMPLE,
        result,
        record,
        reference,
        recover_s=final.ts - times["up"],
        recover_what="NATS back -> transcript of the line spoken across it",
    )
    assert problems == [], "\n".join(problems)
    assert final.ts - times["up"] < 3.0
