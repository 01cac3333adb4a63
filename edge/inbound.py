"""Caller audio gathered into audio.in messages: big batches, except where a recogniser decides.

Every audio.in message costs the edge a publish, NATS a store and a delivery, the STT worker a
tail message and a provider send: at 200 calls, one message per 20 ms frame is 10,000 a second
through all of them. So the audio goes out in batches of `batch_bytes` (AUDIO_IN_BATCH_MS),
except when the recogniser is deciding something and a batch would make it wait:

- at the onset of speech (the start of a line, a barge-in): the batch goes at once;
- from the first quiet frame after speech until `tail_s` of quiet: frame by frame, since a
  recogniser's end-of-speech decision (Deepgram's endpointing 300 ms and utterance end 1 s,
  the offline turn detector's 250 and 800 ms) is taken on the first frames of that quiet, and
  the answer to the caller waits for it.

A batch the caller stopped feeding (Asterisk sends nothing while the caller's side is silent)
goes after `max_age_ticks` ticks. Pure: no clock, no I/O; the call stamps what it adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from events.audio import SAMPLE_RATE

BYTES_PER_S: Final = SAMPLE_RATE * 2

TAIL_S: Final = 1.0  # quiet after speech sent frame by frame


@dataclass(frozen=True, slots=True)
class Batch:
    seq: int
    capture_ts: float  # wall clock when the edge received the batch's first byte
    audio_t: float  # call-audio time of its first sample
    pcm: bytes


class InboundBatcher:
    def __init__(self, batch_bytes: int, max_age_ticks: int, *, tail_s: float = TAIL_S) -> None:
        self.batch_bytes = batch_bytes
        self.max_age_ticks = max_age_ticks
        self.tail_s = tail_s
        self._buf = bytearray()
        self._ts = 0.0
        self._t = 0.0
        self._age = 0
        self._seq = 0
        self._urgent_until = -1.0  # call-audio time up to which every frame goes at once

    @property
    def pending(self) -> int:
        return len(self._buf)

    def add(
        self,
        pcm: bytes,
        *,
        capture_ts: float,
        audio_t: float,
        onset: bool = False,
        quiet_after_speech: bool = False,
    ) -> Batch | None:
        """Add `pcm` (starting at call-audio time `audio_t`); the batch to publish, if due.

        `onset`: speech starts in this chunk. `quiet_after_speech`: this chunk is quiet and the
        caller was speaking just before (the VAD's view)."""
        if not self._buf:
            self._ts, self._t = capture_ts, audio_t
        self._buf += pcm
        end_t = audio_t + len(pcm) / BYTES_PER_S
        if quiet_after_speech:
            self._urgent_until = end_t + self.tail_s
        if onset or end_t <= self._urgent_until or len(self._buf) >= self.batch_bytes:
            return self.flush()
        return None

    def tick(self) -> Batch | None:
        """Once per 20 ms tick: a batch the caller stopped feeding goes."""
        if not self._buf:
            return None
        self._age += 1
        return self.flush() if self._age > self.max_age_ticks else None

    def flush(self) -> Batch | None:
        if not self._buf:
            return None
        batch = Batch(self._seq, self._ts, self._t, bytes(self._buf))
        self._seq += 1
        self._buf.clear()
        self._age = 0
        return batch
