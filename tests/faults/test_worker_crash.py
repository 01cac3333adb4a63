"""kill -9 of a worker instance that owns a live call, a second instance of its kind running.

Each worker kind is killed at a different moment of the sample dialog: the STT owner while the
caller speaks, the TTS owner while the bot speaks, the brain between two turns. The other
instance must take the call over within a few seconds (ack_wait 2 s), rebuild it from the CALLS
history and carry on: the caller never waits more than 3 s (the edge's hold phrase covers the
takeover), nothing stored is lost or stored twice, the dialog walks the fault-free path, and no
utterance is heard twice. The supervisor restarts the killed process (a third pid) meanwhile.
"""

from __future__ import annotations

import signal
import uuid

import pytest
from fault_run import SAMPLE, Blow, Running, baseline, hit_owner, judge, place_call, takeover_s

from events.bus import Bus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TAKEOVER_BOUND_S = 3.5  # ack_wait 2 s, a fetch of at most 1 s, the claim's announcement


@pytest.mark.parametrize(
    ("service", "moment"),
    [
        ("stt_worker", "caller_speech:2"),  # halfway through "Pierre Dupont, 06 12 34 56 78"
        ("tts_worker", "bot_speech:3"),  # 0.3 s into the solution being read out
        ("brain", "between:3"),  # the solution was read, "D'accord" not said yet
    ],
)
@pytest.mark.timeout(120)
async def test_kill_9_of_the_owner_mid_call(
    shared: Running, shared_bus: Bus, service: str, moment: str
) -> None:
    _, reference = await baseline(shared, shared_bus, SAMPLE)
    system = shared.system
    await system.wait_settled()
    assert len(system.pids(service)) == 2
    blow = Blow(service, signal.SIGKILL)
    call_id = str(uuid.uuid4())
    result, record = await place_call(
        shared,
        shared_bus,
        SAMPLE,
        call_id=call_id,
        hooks={moment: hit_owner(shared_bus, call_id, blow)},
    )
    assert blow.pid, f"the fault was never dealt ({moment})"
    took = takeover_s(record, blow)
    problems = judge(
        f"kill -9 {service} ({moment.replace(':', ' ')})",
        SAMPLE,
        result,
        record,
        reference,
        recover_s=took,
        recover_what="kill -> new owner's claim",
    )
    assert problems == [], "\n".join(problems)
    assert took is not None and took <= TAKEOVER_BOUND_S, took
    # The supervisor replaced the dead process: a third pid of this kind.
    assert any(old == blow.pid for s, old, _ in system.restarts if s == service)
    assert blow.pid not in system.pids(service)
