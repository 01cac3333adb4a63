"""The test caller's voice: espeak-ng French, through MBROLA when it is installed.

Whisper (the offline recognizer) understands an MBROLA French voice far better than espeak-ng's
own formant voice, so `voicebot call` prefers it; the Debian packages mbrola + mbrola-fr1 add it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

MBROLA_VOICES = ("fr1", "fr4")
MBROLA_DIRS = (Path("/usr/share/mbrola"), Path("/usr/lib/mbrola"))


def mbrola_installed(name: str) -> bool:
    return any((d / name / name).exists() or (d / name).is_file() for d in MBROLA_DIRS)


def caller_voice() -> str:
    for name in MBROLA_VOICES:
        if mbrola_installed(name):
            return f"mb-{name}"
    return "fr"


def synthesizer(voice: str, rate: int = 150) -> Callable[[str], bytes]:
    """A blocking text -> 8 kHz s16le function (the caller runs it in a thread)."""
    from tts_worker.providers.espeak import synthesize_8k

    def synth(text: str) -> bytes:
        return synthesize_8k(text, voice, rate)

    return synth
