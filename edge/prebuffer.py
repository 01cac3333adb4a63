"""How much of an utterance the edge queues before it starts playing it: a little, unless the
bot's audio has lately come too late.

Asterisk re-times nothing (see pacer.py): an utterance that runs dry once it has started is a
gap the caller hears in the middle of a word. Its audio comes in messages (the first holds
80 ms, then one per provider chunk), and a message is late when the TTS worker or NATS waits
for a CPU. On a full machine that is true for every call at once, not for one: so the depth is
one for the whole edge, like a VoIP jitter buffer's, quick to grow and slow to shrink. It grows
by `step_frames` at each gap, up to `max_frames`; `hold_s` after the last gap it shrinks by one
frame every `shrink_every_s`, back to `base_frames`.

A deeper queue costs a synthesised answer the wait for its next message before it starts (a
cached phrase arrives whole, so nothing); it is never deeper than it was needed lately.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from events.audio import FRAME_MS

log = logging.getLogger("edge.prebuffer")


class Prebuffer:
    def __init__(
        self,
        base_frames: int,
        max_frames: int | None = None,
        *,
        step_frames: int = 2,
        hold_s: float = 10.0,
        shrink_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_frames = max(1, base_frames)
        self.max_frames = max(self.base_frames, max_frames or 0)
        self.step_frames = step_frames
        self.hold_s = hold_s
        self.shrink_every_s = shrink_every_s
        self._clock = clock
        self._raised = 0  # frames above the base right after the last gap
        self._gap_at = -math.inf
        self.gaps = 0

    @property
    def adaptive(self) -> bool:
        return self.max_frames > self.base_frames

    @property
    def frames(self) -> int:
        """The frames an utterance waits for now (fewer once its last message is there)."""
        if not self._raised:
            return self.base_frames
        quiet_s = self._clock() - self._gap_at
        shrunk = (
            0 if quiet_s < self.hold_s else 1 + int((quiet_s - self.hold_s) // self.shrink_every_s)
        )
        return self.base_frames + max(0, self._raised - shrunk)

    def gap(self) -> None:
        """A playing utterance ran dry."""
        self.gaps += 1
        if not self.adaptive:
            return
        before = self.frames
        after = min(self.max_frames, before + self.step_frames)
        self._raised, self._gap_at = after - self.base_frames, self._clock()
        if after > before:
            log.info(
                "bot audio came late: utterances now start with %d ms queued", after * FRAME_MS
            )
