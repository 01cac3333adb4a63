"""Caller audio to the pipeline's 8 kHz s16le mono, whatever AudioSocket kind it came as."""

from __future__ import annotations

import av
import numpy as np

from events.audio import SAMPLE_RATE


class ToPipelineRate:
    """Stateful per call: keeps an odd trailing byte and the resampler's filter history."""

    def __init__(self) -> None:
        self._carry = b""
        self._rate = SAMPLE_RATE
        self._resampler: av.AudioResampler | None = None

    def convert(self, pcm: bytes, rate: int) -> bytes:
        data = self._carry + pcm
        cut = len(data) // 2 * 2
        self._carry = data[cut:]
        data = data[:cut]
        if rate == SAMPLE_RATE or not data:
            return data
        if self._resampler is None or rate != self._rate:
            # A new filter per rate: mixing histories of two rates would smear the switch.
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            self._rate = rate
        samples = np.frombuffer(data, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        return b"".join(
            bytes(f.planes[0])[: f.samples * 2] for f in self._resampler.resample(frame)
        )
