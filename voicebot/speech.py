"""The test caller's voice: espeak-ng French, through MBROLA when it is installed.

Whisper (the offline recognizer) understands an MBROLA French voice far better than espeak-ng's
own formant voice, so `voicebot call` prefers it. MBROLA voices need the system espeak-ng and the
Debian packages `mbrola mbrola-fr1` (contrib / non-free: fine for testing, their licence forbids
selling them inside a product); without them the espeak-ng library from the espeakng-loader
wheel speaks with its own French voice.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

MBROLA_VOICES = ("fr1", "fr4")
MBROLA_DIRS = (Path("/usr/share/mbrola"), Path("/usr/lib/mbrola"))


def mbrola_installed(name: str) -> bool:
    return shutil.which("espeak-ng") is not None and any(
        (d / name / name).exists() or (d / name).is_file() for d in MBROLA_DIRS
    )


def caller_voice() -> str:
    for name in MBROLA_VOICES:
        if mbrola_installed(name):
            return f"mb-{name}"
    return "fr"


def synthesizer(voice: str, rate: int = 150) -> Callable[[str], bytes]:
    """A blocking text -> 8 kHz s16le function (the caller runs it in a thread)."""
    from tts_worker.providers.espeak import synthesize_8k
    from tts_worker.resample import resample_all

    def with_system_espeak(text: str) -> bytes:
        wav = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(rate), "--stdout", text],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
        with wave.open(io.BytesIO(wav)) as w:
            return resample_all(w.readframes(w.getnframes()), w.getframerate())

    def with_library(text: str) -> bytes:
        return synthesize_8k(text, voice, rate)

    return with_system_espeak if voice.startswith("mb-") else with_library
