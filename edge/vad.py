"""A small energy voice-activity detector for local barge-in (pure, numpy)."""

from __future__ import annotations

import math

import numpy as np

FULL_SCALE = 32768.0


def level_dbfs(pcm: bytes) -> float:
    """RMS level of s16le audio in dB full scale (-inf dB for digital silence)."""
    if len(pcm) < 2:
        return -math.inf
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
    rms = float(np.sqrt(np.mean(samples * samples)))
    return 20 * math.log10(rms / FULL_SCALE) if rms > 0 else -math.inf


class EnergyVad:
    """Speech = `min_speech_ms` of consecutive audio above `threshold_dbfs`.

    `feed` returns True once per onset (at the chunk that completes the run); it re-arms after
    a quiet chunk, so one sentence over a long prompt fires once.
    """

    def __init__(self, *, threshold_dbfs: float = -35.0, min_speech_ms: int = 60) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.min_speech_s = min_speech_ms / 1000
        self._loud_s = 0.0
        self._fired = False

    def feed(self, pcm: bytes, sample_rate: int = 8000) -> bool:
        duration = len(pcm) / 2 / sample_rate
        if level_dbfs(pcm) < self.threshold_dbfs:
            self._loud_s = 0.0
            self._fired = False
            return False
        self._loud_s += duration
        if not self._fired and self._loud_s >= self.min_speech_s - 1e-9:
            self._fired = True
            return True
        return False

    def reset(self) -> None:
        self._loud_s = 0.0
        self._fired = False
