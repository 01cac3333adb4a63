"""Audio on the bus: raw s16le 8 kHz mono bodies, metadata in NATS headers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
FRAME_BYTES: Final = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 320 B: one AudioSocket frame
SILENCE: Final = bytes(FRAME_BYTES)

H_SEQ: Final = "Voicebot-Seq"
H_CAPTURE_TS: Final = "Voicebot-Capture-Ts"  # wall clock when the edge read the first byte
H_AUDIO_T: Final = "Voicebot-Audio-T"  # call-audio time (s) of the first sample
H_UTTERANCE: Final = "Voicebot-Utterance"
H_LAST: Final = "Voicebot-Last"
H_INTERRUPTIBLE: Final = "Voicebot-Interruptible"  # may a barge-in cut this utterance
H_EPOCH: Final = "Voicebot-Epoch"  # claim epoch of the TTS owner that synthesized it


class BadAudio(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class AudioIn:
    seq: int
    capture_ts: float
    audio_t: float
    pcm: bytes


@dataclass(frozen=True, slots=True)
class AudioOut:
    utterance_id: str
    seq: int
    last: bool
    pcm: bytes
    interruptible: bool = True
    epoch: int = 0


def in_headers(seq: int, capture_ts: float, audio_t: float) -> dict[str, str]:
    return {H_SEQ: str(seq), H_CAPTURE_TS: f"{capture_ts:.6f}", H_AUDIO_T: f"{audio_t:.3f}"}


def out_headers(
    utterance_id: str, seq: int, last: bool, interruptible: bool = True, epoch: int = 0
) -> dict[str, str]:
    return {
        H_UTTERANCE: utterance_id,
        H_SEQ: str(seq),
        H_LAST: "1" if last else "0",
        H_INTERRUPTIBLE: "1" if interruptible else "0",
        H_EPOCH: str(epoch),
    }


def parse_in(headers: dict[str, str] | None, data: bytes) -> AudioIn:
    h = headers or {}
    try:
        meta = AudioIn(int(h[H_SEQ]), float(h[H_CAPTURE_TS]), float(h[H_AUDIO_T]), data)
    except (KeyError, ValueError) as e:
        raise BadAudio(f"audio.in headers: {e!r}") from e
    if len(data) % 2:
        raise BadAudio(f"audio.in body of {len(data)} B is not whole s16le samples")
    return meta


def parse_out(headers: dict[str, str] | None, data: bytes) -> AudioOut:
    h = headers or {}
    try:
        meta = AudioOut(
            h[H_UTTERANCE],
            int(h[H_SEQ]),
            h.get(H_LAST) == "1",
            data,
            h.get(H_INTERRUPTIBLE, "1") == "1",
            int(h.get(H_EPOCH, "0")),
        )
    except (KeyError, ValueError) as e:
        raise BadAudio(f"audio.out headers: {e!r}") from e
    if len(data) % FRAME_BYTES:
        raise BadAudio(f"audio.out body of {len(data)} B is not whole {FRAME_BYTES} B frames")
    return meta
