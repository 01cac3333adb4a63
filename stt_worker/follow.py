"""Follow a call's dialog decisions so the recogniser knows what the bot just asked.

The brain publishes `decision.expecting` on `call.<id>.decision` with every dialog step. The
follower replays the call's decisions from the start (a takeover mid-call learns the current
question too) and then follows them live, updating the call's `SttContext`. A decision from a
brain instance that lost the call (an `epoch` below one already seen) is ignored.
"""

from __future__ import annotations

import logging

from events import schemas, subjects
from events.bus import Bus
from events.fence import Fence
from stt_worker.providers.base import SttContext

log = logging.getLogger("stt_worker.follow")


class ExpectationTracker:
    """Pure: decisions in, the current expectation out (into the context)."""

    def __init__(self, context: SttContext) -> None:
        self.context = context
        self.fence = Fence()

    def apply(self, decision: schemas.Decision) -> None:
        if self.fence.allows("brain", decision.epoch):  # not a stale brain owner
            self.context.expect(decision.expecting)


async def follow_expectations(bus: Bus, call_id: str, context: SttContext) -> None:
    """Runs until cancelled (the call's transcription ended)."""
    tracker = ExpectationTracker(context)
    async for env in bus.replay(subjects.decision(call_id)):
        if isinstance(env.event, schemas.Decision):
            tracker.apply(env.event)
            log.debug("[%s] expecting %s", call_id, context.expecting)
