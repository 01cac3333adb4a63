"""Caller audio gathered into audio.in messages: big batches, except where a recogniser decides.

Every audio.in message costs the edge a publish, NATS a store and a delivery, the STT worker a
tail message and a provider send: at 200 calls, one message per 20 ms frame is 10,000 a second
through all of them. So the audio goes out in batches of `batch_bytes` (AUDIO_IN_BATCH_MS),
except when the recogniser is deciding something and a batch would make it wait:

- at the onset of speech (the start of a line, a barge-in): the batch goes at once;
- from `tail_from_s` to `tail_to_s` of quiet after speech: frame by frame. The recognisers
  decide the end of a line on that quiet (the offline turn detector at 250 and 800 ms,
  Deepgram's endpointing at 300 ms and its utterance end at 1 s), and the answer to the caller
  waits for that decision. Before 120 ms nothing is decided: a pause between words of a line
  went frame by frame for a whole second before, which with real speech (not a test tone) was
  most of the line (36 messages a second against 27 for recorded French lines:
  `python -m bench inbound_batching`). The batch that holds the line's last frames goes at
  120 ms.

A batch the caller stopped feeding (Asterisk sends nothing while the caller's side is silent)
goes after `max_age_ticks` ticks. Pure: no clock, no I/O; the call stamps what it adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from events.audio import SAMPLE_RATE

BYTES_PER_S: Final = SAMPLE_RATE * 2

# Quiet after speech sent frame by frame: from the first decision's margin to past the last.
TAIL_FROM_S: Final = 0.12
TAIL_TO_S: Final = 1.1


@dataclass(frozen=True, slots=True)
class Batch:
    seq: int
    capture_ts: float  # wall clock when the edge received the batch's first byte
    audio_t: float  # call-audio time of its first sample
    pcm: bytes


class InboundBatcher:
    def __init__(
        self,
        batch_bytes: int,
        max_age_ticks: int,
        *,
        tail_from_s: float = TAIL_FROM_S,
        tail_to_s: float = TAIL_TO_S,
    ) -> None:
        self.batch_bytes = batch_bytes
        self.max_age_ticks = max_age_ticks
        self.tail_from_s = tail_from_s
        self.tail_to_s = tail_to_s
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
        quiet_after_speech_s: float = 0.0,
    ) -> Batch | None:
        """Add `pcm` (starting at call-audio time `audio_t`); the batch to publish, if due.

        `onset`: speech starts in this chunk. `quiet_after_speech_s`: how long the caller has
        been quiet at the end of this chunk, after speaking (the VAD's view; 0 otherwise)."""
        if not self._buf:
            self._ts, self._t = capture_ts, audio_t
        self._buf += pcm
        end_t = audio_t + len(pcm) / BYTES_PER_S
        if quiet_after_speech_s >= self.tail_from_s - 1e-9:
            quiet_since = end_t - quiet_after_speech_s
            self._urgent_until = max(self._urgent_until, quiet_since + self.tail_to_s)
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
