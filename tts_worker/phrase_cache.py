"""The fixed phrases pre-generated as 8 kHz s16le files and held in RAM.

`<key>.raw` per phrase of events.phrases, padded to whole 320 B frames, and `manifest.json` with
the hash of the text each file was made from, so a changed text is regenerated. The voice is not
part of the hash: a cache made once with the cloud voice must not be overwritten by the offline
voice at the next start.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Final

from events.audio import SAMPLE_RATE
from events.phrases import PHRASES
from tts_worker.config import TtsConfig
from tts_worker.frames import pad_to_frames
from tts_worker.pronounce import normalise
from tts_worker.providers.base import TtsProvider
from tts_worker.providers.espeak import EspeakProvider
from tts_worker.providers.openai import OpenAIProvider
from tts_worker.resample import AudioPool

log = logging.getLogger("tts_worker.phrase_cache")

MANIFEST: Final = "manifest.json"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _manifest(cache_dir: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads((cache_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stale(cache_dir: Path) -> list[str]:
    """Keys whose file is missing or was made from another text."""
    manifest = _manifest(cache_dir)
    return [
        key
        for key, text in PHRASES.items()
        if not (cache_dir / f"{key}.raw").is_file()
        or manifest.get(key, {}).get("hash") != text_hash(text)
    ]


async def generate(
    cache_dir: Path, provider: TtsProvider, *, keys: list[str] | None = None
) -> list[str]:
    """Synthesize the phrases (all, or `keys`) into `cache_dir`; one report line per phrase."""
    manifest = await asyncio.to_thread(_manifest, cache_dir)
    lines = []
    for key in keys if keys is not None else list(PHRASES):
        text = PHRASES[key]
        spoken = normalise(text)
        pcm = pad_to_frames(b"".join([chunk async for chunk in provider.speak(spoken)]))
        path = cache_dir / f"{key}.raw"
        await asyncio.to_thread(_write, path, pcm)
        manifest[key] = {"hash": text_hash(text), "provider": provider.name}
        seconds = len(pcm) / (2 * SAMPLE_RATE)
        lines.append(f"✓ {path.name} créé ({len(pcm) / 1024:.1f} KB, {seconds:.1f}s)")
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    await asyncio.to_thread(_write, cache_dir / MANIFEST, body)
    return lines


async def generate_configured(config: TtsConfig) -> list[str]:
    """What `voicebot cache` runs: every phrase into `config.cache_dir`, with the configured voice
    (OpenAI when TTS_PROVIDER resolves to it, else espeak)."""
    pool = AudioPool(config.pool_workers)
    openai_voice = None
    try:
        provider: TtsProvider = EspeakProvider(
            pool, voice=config.espeak_voice, rate=config.espeak_rate
        )
        if config.provider == "openai" and config.openai_api_key:
            provider = openai_voice = OpenAIProvider(
                pool,
                api_key=config.openai_api_key,
                base_url=config.openai_base_url,
                model=config.openai_model,
                voice=config.openai_voice,
                timeout_s=max(config.timeout_s, 30.0),  # whole phrases, not a live call
            )
        return await generate(config.cache_dir, provider)
    finally:
        if openai_voice is not None:
            await openai_voice.close()
        await pool.close()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One temporary name per process: two TTS instances starting on a fresh cache write the
    # same phrases at once, and a shared name let one move the other's half-written file in.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # a reader never sees half a file


def load(cache_dir: Path) -> dict[str, bytes]:
    """Every cached phrase of events.phrases found in `cache_dir`, in RAM."""
    phrases = {}
    for key in PHRASES:
        path = cache_dir / f"{key}.raw"
        if path.is_file():
            phrases[key] = pad_to_frames(path.read_bytes())
    return phrases
