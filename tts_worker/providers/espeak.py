"""The offline French voice: libespeak-ng from the `espeakng-loader` wheel, through ctypes.

libespeak is one global, non-thread-safe synthesizer per process, so synthesis runs in a pool
process (each runs its tasks one at a time), never on the event loop. In synchronous mode the
library hands audio to a callback in ~100 ms chunks as it synthesizes; a sentence takes a few
milliseconds on one core, so the chunks of one sentence travel back to the loop together:
crossing the process boundary per chunk would cost more than it saves.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Final

from tts_worker.providers.base import ProviderError
from tts_worker.resample import AudioPool, PoolFailure, resample_all

log = logging.getLogger("tts_worker.providers.espeak")

ESPEAK_RATE_HZ: Final = 22050  # what libespeak-ng produces
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_BUFFER_MS: Final = 100
_PARAM_RATE: Final = 1
_POS_CHARACTER: Final = 1
_CHARS_UTF8: Final = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


# --- inside a pool process --------------------------------------------------------------------


@dataclass
class _Engine:
    lib: Any
    callback: Any  # the ctypes callback must outlive every synthesis
    chunks: list[bytes]
    voice: str = ""
    rate: int = 0


_engine: _Engine | None = None


def _load() -> _Engine:
    global _engine  # noqa: PLW0603 - one libespeak per process, by the library's design
    if _engine is not None:
        return _engine
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    data = espeakng_loader.get_data_path().encode()
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data, 0)
    if rate != ESPEAK_RATE_HZ:
        raise RuntimeError(f"libespeak-ng initialisation returned {rate}")
    chunks: list[bytes] = []

    def on_audio(wav: Any, samples: int, _events: Any) -> int:
        if samples > 0:
            chunks.append(ctypes.string_at(wav, samples * 2))
        return 0  # 0: go on

    callback = _SYNTH_CALLBACK(on_audio)
    lib.espeak_SetSynthCallback(callback)
    _engine = _Engine(lib, callback, chunks)
    return _engine


def synthesize(text: str, voice: str, rate: int) -> bytes:
    """French `text` as s16le mono PCM at 22050 Hz (runs in a pool process)."""
    engine = _load()
    if voice != engine.voice:
        if engine.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak voice {voice!r} not found")
        engine.voice = voice
    if rate != engine.rate:
        engine.lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        engine.rate = rate
    raw = text.encode()
    engine.chunks.clear()
    status = engine.lib.espeak_Synth(
        raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
    )
    if status != 0:
        raise RuntimeError(f"espeak_Synth failed with status {status}")
    pcm = b"".join(engine.chunks)
    engine.chunks.clear()
    return pcm


def synthesize_8k(text: str, voice: str, rate: int) -> bytes:
    return resample_all(synthesize(text, voice, rate), ESPEAK_RATE_HZ)


# --- the provider -----------------------------------------------------------------------------


class EspeakProvider:
    name = "espeak"
    native_rate = ESPEAK_RATE_HZ

    def __init__(self, pool: AudioPool, *, voice: str = "fr", rate: int = 160) -> None:
        self.pool = pool
        self.voice = voice
        self.rate = rate

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes two syntheses of one text the same audio: (provider, voice, model)."""
        return (self.name, self.voice, f"rate={self.rate}")

    async def speak_native(self, text: str, speed: float = 1.0) -> AsyncGenerator[bytes, None]:
        """`text` at 22050 Hz, for callers that resample a whole utterance continuously;
        `speed` below 1 reads it slower (words per minute scaled)."""
        rate = max(80, round(self.rate * speed))
        try:
            try:
                pcm = await self.pool.run(self.pool.pick(), synthesize, text, self.voice, rate)
            except PoolFailure as e:
                # The process was replaced: once more, so the caller still hears the sentence.
                log.warning("espeak: %s; trying the sentence again", e)
                pcm = await self.pool.run(self.pool.pick(), synthesize, text, self.voice, rate)
        except RuntimeError as e:
            raise ProviderError(f"espeak: {e}") from e
        yield pcm

    async def speak(self, text: str) -> AsyncGenerator[bytes, None]:
        try:
            pcm = await self.pool.run(self.pool.pick(), synthesize_8k, text, self.voice, self.rate)
        except RuntimeError as e:
            raise ProviderError(f"espeak: {e}") from e
        yield pcm
