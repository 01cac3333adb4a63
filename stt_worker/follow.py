"""What the bot just asked, from the call's dialog decisions, so the recogniser knows.

The brain publishes `decision.expecting` on `call.<id>.decision` with every dialog step. The
STT worker reads the call's decisions from the start (a takeover mid-call learns the current
question too) and then live (worker.py), and hands each to the tracker, which keeps the call's
`SttContext` up to date. A decision from a brain instance that lost the call (an `epoch` below
one already seen) is ignored.
"""

from __future__ import annotations

import logging

from events import schemas
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
