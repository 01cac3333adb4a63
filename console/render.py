"""A call's audio for the page: both sides on the call's clock, as waveforms and a playable
file. Pure functions run in the console's process pool (numpy, PyAV), never on its loop.

The stream audio (before `voicebot archive`) is laid out by the archiver's own timeline
(archiver/timeline.py): the caller where the edge captured it, the bot where the edge played
it. So the WAV the page plays while a call is fresh and the MP3 it plays once archived put
every word at the same second.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from archiver import mp3, timeline
from events.audio import SAMPLE_RATE

PEAKS_PER_S: Final = 50  # one bar per 20 ms frame: the edge's own unit
Samples = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Rendered:
    """What the page needs of a call's audio: the waveform, and the WAV when rendered here."""

    peaks: dict[str, Any]
    wav: bytes | None = None
    notes: tuple[str, ...] = ()


def peaks(left: Samples, right: Samples, per_s: int = PEAKS_PER_S) -> dict[str, Any]:
    """Loudest sample of each 1/per_s s, per side, on a 0-100 scale (square root: quiet
    speech stays visible beside loud speech)."""
    step = SAMPLE_RATE // per_s

    def side(x: Samples) -> list[int]:
        n = len(x) // step * step
        if n == 0:
            return []
        rest = x[n:]
        blocks = np.abs(x[:n].astype(np.int32)).reshape(-1, step).max(axis=1)
        if len(rest):
            blocks = np.append(blocks, np.abs(rest.astype(np.int32)).max())
        scaled = np.sqrt(blocks / 32768.0) * 100
        return [int(v) for v in np.round(scaled)]

    return {
        "per_s": per_s,
        "duration_s": round(max(len(left), len(right)) / SAMPLE_RATE, 3),
        "caller": side(left),
        "bot": side(right),
    }


def wav(left: Samples, right: Samples) -> bytes:
    """Stereo 8 kHz s16le WAV: caller left, bot right (as the archive's MP3)."""
    n = max(len(left), len(right))
    both = np.zeros((n, 2), np.int16)
    both[: len(left), 0] = left
    both[: len(right), 1] = right
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(both.astype("<i2").tobytes())
    return out.getvalue()


def render_stream(call: timeline.CallAudio) -> Rendered:
    """The stream audio of a call (pool job): laid on its clock, as WAV and waveforms."""
    left, right, notes = timeline.stereo(call)
    return Rendered(peaks(left, right), wav(left, right), tuple(notes))


def render_mp3(path: Path) -> Rendered:
    """An archived call's MP3 (pool job): its waveforms; the file itself is served as is."""
    left, right, _ = mp3.decode(path)
    return Rendered(peaks(left, right))


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`Range: bytes=a-b` -> (start, end exclusive) within `size`; None: the whole body.
    Browsers ask for ranges to seek in a media file; a range that cannot be served raises."""
    if not header or not header.startswith("bytes="):
        return None
    spec = header[len("bytes=") :].split(",")[0].strip()
    first, sep, last = spec.partition("-")
    if not sep:
        raise ValueError(f"bad range {header!r}")
    if first == "":
        n = int(last)
        if n <= 0:
            raise ValueError(f"bad range {header!r}")
        return max(0, size - n), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or end <= start:
        raise ValueError(f"range {header!r} outside {size} bytes")
    return start, end
