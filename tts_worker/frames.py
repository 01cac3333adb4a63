"""Cutting PCM into whole 320 B frames and batching them into audio.out messages (pure).

Audio arrives from providers in chunks of any size (an odd byte included); the edge needs whole
20 ms frames. The remainder of a chunk is carried into the next one so nothing is padded in the
middle of an utterance (padding there would be a click); only the utterance's tail is padded.
"""

from __future__ import annotations

from events.audio import FRAME_BYTES, FRAME_MS, SILENCE


def pad_to_frames(pcm: bytes) -> bytes:
    """`pcm` followed by silence up to a whole number of frames."""
    short = -len(pcm) % FRAME_BYTES
    return pcm + bytes(short)


def frames_of(pcm: bytes) -> list[bytes]:
    """Whole frames of `pcm`, the tail padded with silence."""
    padded = pad_to_frames(pcm)
    return [padded[i : i + FRAME_BYTES] for i in range(0, len(padded), FRAME_BYTES)]


def batch_bytes(batch_ms: int) -> int:
    """Message size for a batch duration, rounded down to whole frames (at least one)."""
    return max(1, batch_ms // FRAME_MS) * FRAME_BYTES


class Packer:
    """Turns a stream of PCM chunks into messages of `batch` whole frames.

    `push` returns the messages that are complete; it always keeps something back so that
    `finish` has a message to mark `last` (the edge needs one), and `finish` pads the tail.

    With `first` (bytes, whole frames), the utterance's first message goes as soon as that
    much is there rather than a whole batch: a provider streaming its first audio in 100 ms
    chunks otherwise held the caller's answer back until its second chunk (the edge starts an
    utterance once EDGE_PREBUFFER_MS, 40 ms, is queued, and later batches come faster than
    real time).

    Message boundaries depend on the audio only, never on how the provider chunked it: message
    0 is exactly `first` bytes, every later one but the last a whole batch. A TTS instance that
    takes a call over re-speaks an utterance numbered from 0 again, and the edge keeps the
    messages it already has by number: with boundaries that moved with the chunking, the
    splice repeated or skipped frames.
    """

    def __init__(self, batch: int, *, first: int | None = None) -> None:
        if batch <= 0 or batch % FRAME_BYTES:
            raise ValueError(f"batch of {batch} B is not a whole number of {FRAME_BYTES} B frames")
        if first is not None and (first <= 0 or first % FRAME_BYTES or first > batch):
            raise ValueError(f"first message of {first} B: whole frames, at most a batch")
        self.batch = batch
        self.first = first
        self._buf = bytearray()
        self._sent = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def push(self, pcm: bytes) -> list[bytes]:
        self._buf += pcm
        out: list[bytes] = []
        # Strictly more than `first`: something stays back for `last`.
        if not self._sent and self.first is not None and len(self._buf) > self.first:
            out.append(bytes(self._buf[: self.first]))
            del self._buf[: self.first]
        # Strictly more than a batch: the last full batch waits until we know it is not the end.
        while len(self._buf) > self.batch:
            out.append(bytes(self._buf[: self.batch]))
            del self._buf[: self.batch]
        self._sent = self._sent or bool(out)
        return out

    def finish(self) -> bytes:
        """The last message: the rest padded to whole frames (one silent frame if none)."""
        rest = pad_to_frames(bytes(self._buf)) if self._buf else SILENCE
        self._buf.clear()
        return rest


def messages_of(pcm: bytes, batch: int) -> list[bytes]:
    """A whole utterance already in memory (a cached phrase) as messages, the last one short."""
    packer = Packer(batch)
    return [*packer.push(pcm), packer.finish()]
