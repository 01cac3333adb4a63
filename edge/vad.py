"""A small energy voice-activity detector (pure, numpy): when the caller starts and stops.

The edge uses it to know when the caller finished a line (so the bot owes an answer, see
silence_guard.py) and, when enabled, for local barge-in. It runs for every frame of every call
on the pacing process, so it costs one dot product per chunk.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

FULL_SCALE = 32768.0

Change = Literal["onset", "offset"]


def level_dbfs(pcm: bytes) -> float:
    """RMS level of s16le audio in dB full scale (-inf dB for digital silence)."""
    n = len(pcm) // 2
    if n == 0:
        return -math.inf
    samples = np.frombuffer(pcm[: n * 2], dtype="<i2").astype(np.float32)
    power = float(samples @ samples) / n
    return 10 * math.log10(power / (FULL_SCALE * FULL_SCALE)) if power > 0 else -math.inf


class EnergyVad:
    """Speech starts after `min_speech_ms` of consecutive audio above `threshold_dbfs` and ends
    after `hangover_ms` below it (the pauses between words are shorter).

    `feed` returns "onset" or "offset" at the chunk where that happens, else None.
    """

    def __init__(
        self, *, threshold_dbfs: float = -35.0, min_speech_ms: int = 60, hangover_ms: int = 300
    ) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.min_speech_s = min_speech_ms / 1000
        self.hangover_s = hangover_ms / 1000
        self.speaking = False
        self.loud = False  # the last chunk was above the threshold
        self._loud_s = 0.0
        self._quiet_s = 0.0

    @property
    def quiet_s(self) -> float:
        """How long the audio has been below the threshold (0 after a loud chunk)."""
        return self._quiet_s

    def feed(self, pcm: bytes, sample_rate: int = 8000) -> Change | None:
        duration = len(pcm) / 2 / sample_rate
        self.loud = level_dbfs(pcm) >= self.threshold_dbfs
        if not self.loud:
            self._loud_s = 0.0
            self._quiet_s += duration
            if self.speaking and self._quiet_s >= self.hangover_s - 1e-9:
                self.speaking = False
                return "offset"
            return None
        self._quiet_s = 0.0
        self._loud_s += duration
        if not self.speaking and self._loud_s >= self.min_speech_s - 1e-9:
            self.speaking = True
            return "onset"
        return None

    def reset(self) -> None:
        self.speaking = False
        self.loud = False
        self._loud_s = 0.0
        self._quiet_s = 0.0
