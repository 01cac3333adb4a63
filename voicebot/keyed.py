"""Keyed caller lines: line k of a script spoken as a tone any recogniser fake can name.

The Deepgram loopback (tests/loopback/deepgram_live.py, keyed mode) hears a stretch whose tone is
line k's as the script's k-th text, on any connection: a load or fault caller speaks tones, the
pipeline runs the real Deepgram SDK, and every STT instance transcribes the same words. Pure.
"""

from __future__ import annotations

from typing import Final

import numpy as np

SAMPLE_RATE: Final = 8000
# Line k is a tone at KEY_BASE_HZ + k * KEY_STEP_HZ. 150 Hz apart, a stretch of 0.1 s (a
# frame resolution of 10 Hz) is told apart with a wide margin; 0..19 stay below 3.2 kHz.
KEY_BASE_HZ: Final = 300.0
KEY_STEP_HZ: Final = 150.0
KEY_LINES: Final = 20


def key_hz(k: int) -> float:
    if not 0 <= k < KEY_LINES:
        raise ValueError(f"keyed lines are numbered 0..{KEY_LINES - 1}, got {k}")
    return KEY_BASE_HZ + k * KEY_STEP_HZ


def key_tone(k: int, seconds: float = 0.6, *, dbfs: float = -12.0) -> bytes:
    """Line k of a keyed script as 8 kHz s16le "speech": a tone burst with 10 ms ramps."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    amplitude = 32767 * 10 ** (dbfs / 20)
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * SAMPLE_RATE))
    x = amplitude * ramp * np.sin(2 * np.pi * key_hz(k) * t)
    return bytes(x.astype("<i2").tobytes())


def key_of(pcm: bytes) -> int | None:
    """Which keyed line a stretch of 8 kHz s16le audio is (its dominant frequency), or None."""
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64)
    if len(x) < SAMPLE_RATE // 50:
        return None
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak = float(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])
    k = round((peak - KEY_BASE_HZ) / KEY_STEP_HZ)
    if not 0 <= k < KEY_LINES or abs(peak - key_hz(k)) > KEY_STEP_HZ / 3:
        return None
    return k
