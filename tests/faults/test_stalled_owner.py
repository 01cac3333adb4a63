"""SIGSTOP of a call's owner for longer than its claim, then SIGCONT: a stalled process (a long
GC pause, a VM frozen by its host, a swap storm) that resumes after another instance took its
call over.

The claim lapses after ack_wait (2 s) without heartbeats and the other instance takes over with a
newer epoch. When the stalled owner resumes, whatever it had in flight (a transcript the
loopback sent it, audio it was publishing) must not reach the caller a second time: the edge
and the brain drop a stale epoch, and the owner lets the call go once it sees the newer claim.
The caller hears each utterance once, never two owners' audio interleaved, and no line of the
caller goes untranscribed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest
from fault_run import SAMPLE, Blow, Running, baseline, hit_owner, judge, place_call, takeover_s

from events import schemas
from events.bus import Bus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STALL_S = 3.5  # past the claim's ack_wait (2 s) and the fetch that hands the call over


@pytest.mark.parametrize(
    ("service", "moment"),
    [
        ("stt_worker", "caller_speech:2"),  # frozen while it hears "Pierre Dupont, ..."
        ("tts_worker", "bot_speech:3"),  # frozen 0.3 s into the streamed solution
        ("brain", "caller_speech:3"),  # frozen while the caller says "Internet"
    ],
)
@pytest.mark.timeout(120)
async def test_an_owner_stalled_past_its_claim_then_resumed(
    shared: Running, shared_bus: Bus, service: str, moment: str
) -> None:
    _, reference = await baseline(shared, shared_bus, SAMPLE)
    system = shared.system
    await system.wait_settled()
    assert len(system.pids(service)) == 2
    blow = Blow(service, signal.SIGSTOP)

    async def resume_later() -> None:
        await asyncio.sleep(STALL_S)
        os.kill(blow.pid, signal.SIGCONT)

    call_id = str(uuid.uuid4())
    try:
        result, record = await place_call(
            shared,
            shared_bus,
            SAMPLE,
            call_id=call_id,
            hooks={moment: hit_owner(shared_bus, call_id, blow, then=resume_later)},
        )
    finally:
        if blow.pid:
            os.kill(blow.pid, signal.SIGCONT)
    assert blow.pid, f"the fault was never dealt ({moment})"
    took = takeover_s(record, blow)
    problems = judge(
        f"SIGSTOP {service} {STALL_S:.1f} s ({moment.replace(':', ' ')})",
        SAMPLE,
        result,
        record,
        reference,
        recover_s=took,
        recover_what="stop -> new owner's claim",
    )
    assert problems == [], "\n".join(problems)
    assert took is not None and took < STALL_S
    # The stalled process lived on (it was not killed): it resumed and let the call go.
    assert blow.pid in system.pids(service)
    if service == "stt_worker":
        stale = [t for t in record.of(schemas.Final) if t.epoch == blow.epoch and t.text]
        assert all(t.ts < blow.at_wall + STALL_S for t in stale), "a stale owner's transcript"
