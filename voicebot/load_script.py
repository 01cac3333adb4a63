"""What every load call says, prepared once: a caller script's lines as AudioSocket messages.

All calls of a load run speak the same script, so each line is synthesised (or read, or keyed)
once and cut into ready-to-write 323-byte messages; the shared ticker then writes a prepared
`bytes` per call per tick. Keyed mode replaces the k-th spoken line by the tone the Deepgram
loopback hears as that line's text (voicebot/keyed.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import framing
from events.audio import FRAME_BYTES, SILENCE
from voicebot.caller import Step, read_wav_8k
from voicebot.keyed import key_tone

SPOKEN = ("say", "bargein", "wav")
SILENCE_MESSAGE = framing.encode_audio(SILENCE)
VOICED_DBFS = -50.0  # a frame of the caller's own (clean) line above this is speech
KEYED_TONE_S = 1.0


@dataclass(frozen=True)
class PreparedLine:
    """A spoken line: its frames as AudioSocket messages, and which frames are speech."""

    text: str
    messages: tuple[bytes, ...]
    last_voiced: int  # index of the last voiced frame: the line's speech ends after it


@dataclass(frozen=True)
class PreparedStep:
    step: Step
    line: PreparedLine | None = None  # for say / bargein / wav


def spoken_texts(steps: Sequence[Step]) -> list[str]:
    """The words of the script's spoken lines, in order: what keyed line k stands for."""
    return [s.shown or s.arg for s in steps if s.verb in SPOKEN]


def frame_levels_dbfs(pcm: bytes) -> np.ndarray:
    """RMS level of each whole 20 ms frame of s16le audio."""
    n = len(pcm) // FRAME_BYTES
    x = np.frombuffer(pcm[: n * FRAME_BYTES], "<i2").astype(np.float32).reshape(n, -1)
    power = (x * x).mean(axis=1)
    return np.asarray(10 * np.log10(np.maximum(power, 1e-6) / 32768.0**2))


def prepare_line(text: str, pcm: bytes) -> PreparedLine:
    if len(pcm) % FRAME_BYTES:
        pcm += bytes(FRAME_BYTES - len(pcm) % FRAME_BYTES)
    if not pcm:
        pcm = SILENCE
    levels = frame_levels_dbfs(pcm)
    voiced = np.flatnonzero(levels > VOICED_DBFS)
    messages = tuple(
        framing.encode_audio(pcm[i : i + FRAME_BYTES]) for i in range(0, len(pcm), FRAME_BYTES)
    )
    last = int(voiced[-1]) if len(voiced) else len(messages) - 1
    return PreparedLine(text, messages, last)


def prepare(
    steps: Sequence[Step], *, synth: Callable[[str], bytes] | None, keyed: bool
) -> list[PreparedStep]:
    """Each step with its audio; `synth` (blocking) is called once per distinct `say` text."""
    out: list[PreparedStep] = []
    said: dict[str, PreparedLine] = {}
    k = 0
    for step in steps:
        if step.verb not in SPOKEN:
            out.append(PreparedStep(step))
            continue
        text = step.shown or step.arg
        if keyed:
            line = prepare_line(text, key_tone(k, KEYED_TONE_S))
        elif step.verb == "wav":
            line = prepare_line(text, read_wav_8k(Path(step.arg)))
        else:
            if synth is None:
                raise ValueError(f"line {step.line}: `say` needs a voice (or --keyed)")
            line = said.get(text) or prepare_line(text, synth(text))
            said[text] = line
        k += 1
        out.append(PreparedStep(step, line))
    return out
