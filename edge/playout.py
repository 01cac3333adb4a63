"""The bot's side of one call: a small jitter queue of 320 B frames grouped by utterance.

No I/O; no clock but the shared `Prebuffer`'s. The ticker asks `next_frame()` once per tick and
always gets exactly one frame (silence when nothing is due). Playback notices (started /
finished / interrupted) come back as values for the caller to publish. Utterances play in
arrival order; an utterance starts once the prebuffer's frames are queued or its last message
arrived, so a slow first message does not start it and then starve it at once. A playing
utterance that runs dry is a gap, reported to the prebuffer (prebuffer.py), which the edge's
calls share.

Messages of an utterance carry a sequence number. A TTS instance that takes a call over re-speaks
an utterance its dead predecessor had only partly published from its start, numbered from 0
again: what the edge already holds of it is skipped, so the caller hears it once, not its start
twice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, Literal

from edge.prebuffer import Prebuffer
from events.audio import FRAME_BYTES, SILENCE

FORGET_DONE: Final = 256  # ids of finished or flushed utterances remembered, to drop late audio


@dataclass(frozen=True, slots=True)
class Notice:
    state: Literal["started", "finished", "interrupted"]
    utterance_id: str
    frames: int  # frames of the utterance written so far
    reason: str = ""


@dataclass(slots=True)
class _Utterance:
    id: str
    interruptible: bool
    frames: deque[bytes] = field(default_factory=deque)
    complete: bool = False  # its last message arrived
    started: bool = False
    played: int = 0
    idle_ticks: int = 0  # consecutive ticks at the head with nothing to play
    dry: bool = False  # started, and ran out of frames: the gap is already counted
    last_seq: int = -1  # sequence number of the newest message accepted


class Playout:
    def __init__(
        self,
        *,
        prebuffer: int | Prebuffer = 2,
        max_frames: int = 6000,
        stall_ticks: int = 250,
    ) -> None:
        self.prebuffer = prebuffer if isinstance(prebuffer, Prebuffer) else Prebuffer(prebuffer)
        self.max_frames = max_frames
        self.stall_ticks = stall_ticks
        self._order: deque[_Utterance] = deque()
        self._by_id: dict[str, _Utterance] = {}
        self._done: deque[str] = deque(maxlen=FORGET_DONE)
        self._queued = 0
        self.underruns = 0  # ticks where a started utterance had no frame ready
        self.overflow_frames = 0  # frames refused because the queue was full
        self.late_frames = 0  # frames of an already flushed or finished utterance, dropped
        self.repeated_frames = 0  # frames of messages already received (a re-spoken start)

    @property
    def queued_frames(self) -> int:
        return self._queued

    @property
    def idle(self) -> bool:
        """Nothing queued and no utterance waiting for more audio."""
        return not self._order

    def utterance_ids(self) -> list[str]:
        """Utterances queued or playing, in play order."""
        return [u.id for u in self._order]

    def playing_interruptible(self) -> str | None:
        """The utterance being heard, if a barge-in may cut it."""
        if self._order and self._order[0].started and self._order[0].interruptible:
            return self._order[0].id
        return None

    def push(
        self,
        utterance_id: str,
        pcm: bytes,
        *,
        last: bool,
        interruptible: bool = True,
        seq: int | None = None,
    ) -> int:
        """Queue an audio.out message (`seq`: its number in the utterance, if known); returns
        the frames accepted."""
        if utterance_id in self._done:
            self.late_frames += len(pcm) // FRAME_BYTES
            return 0
        u = self._by_id.get(utterance_id)
        if u is None:
            u = _Utterance(utterance_id, interruptible)
            self._by_id[utterance_id] = u
            self._order.append(u)
        elif u.complete:  # audio after its last message
            self.late_frames += len(pcm) // FRAME_BYTES
            return 0
        if seq is not None:
            if seq <= u.last_seq:  # already here: a new owner re-speaking it from the start
                self.repeated_frames += len(pcm) // FRAME_BYTES
                # Its rendition may end sooner than what was kept (a voice that varies).
                u.complete = u.complete or last
                return 0
            u.last_seq = seq
        accepted = 0
        for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
            if self._queued >= self.max_frames:
                self.overflow_frames += 1
                continue
            u.frames.append(pcm[start : start + FRAME_BYTES])
            self._queued += 1
            accepted += 1
        u.complete = u.complete or last
        u.idle_ticks = 0
        return accepted

    def next_frame(self) -> tuple[bytes, list[Notice]]:
        """The frame to write this tick and what happened to utterances doing so."""
        notices: list[Notice] = []
        while self._order:
            u = self._order[0]
            if u.frames and (u.started or u.complete or len(u.frames) >= self.prebuffer.frames):
                if not u.started:
                    u.started = True
                    notices.append(Notice("started", u.id, 0))
                frame = u.frames.popleft()
                self._queued -= 1
                u.played += 1
                u.idle_ticks = 0
                u.dry = False
                if not u.frames and u.complete:
                    self._retire(u)
                    notices.append(Notice("finished", u.id, u.played))
                return frame, notices
            if u.complete:  # its last message was empty, or it never had audio
                self._retire(u)
                if not u.started:
                    notices.append(Notice("started", u.id, 0))
                notices.append(Notice("finished", u.id, u.played))
                continue
            if u.started:
                self.underruns += 1
                if not u.dry:  # one gap, however many ticks it lasts
                    u.dry = True
                    self.prebuffer.gap()
            u.idle_ticks += 1
            # Its producer died: do not block the queue. A first frame may take longer (TTS).
            if u.idle_ticks >= (self.stall_ticks if u.started else 2 * self.stall_ticks):
                notices.extend(self._drop(u, "stalled"))
                continue
            return SILENCE, notices
        return SILENCE, notices

    def expect(self, utterance_id: str, *, interruptible: bool = True) -> None:
        """Reserve an utterance's place before its audio arrives (the `say` was seen)."""
        if utterance_id in self._by_id or utterance_id in self._done:
            return
        u = _Utterance(utterance_id, interruptible)
        self._by_id[utterance_id] = u
        self._order.append(u)

    def flush(
        self, utterance_id: str | None = None, *, reason: str = "flush"
    ) -> tuple[list[Notice], int]:
        """Drop the queued frames of one utterance (or all); returns notices and frames dropped."""
        targets = [u for u in self._order if utterance_id is None or u.id == utterance_id]
        dropped = sum(len(u.frames) for u in targets)
        notices: list[Notice] = []
        for u in targets:
            notices.extend(self._drop(u, reason))
        if utterance_id is not None and not targets and utterance_id not in self._by_id:
            self._done.append(utterance_id)  # its audio may still be on the way
        return notices, dropped

    def interrupt(self, utterance_id: str, reason: str) -> list[Notice]:
        u = self._by_id.get(utterance_id)
        return self._drop(u, reason) if u is not None else []

    def _drop(self, u: _Utterance, reason: str) -> list[Notice]:
        self._queued -= len(u.frames)
        u.frames.clear()
        self._retire(u)
        return [Notice("interrupted", u.id, u.played, reason)]

    def _retire(self, u: _Utterance) -> None:
        self._order.remove(u)
        del self._by_id[u.id]
        self._done.append(u.id)
