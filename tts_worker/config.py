"""The TTS worker's settings, read once from the environment and validated at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from events import env
from events.env import ConfigError


@dataclass(frozen=True, kw_only=True)
class TtsConfig:
    provider: str  # openai | espeak (auto resolved)
    openai_api_key: str | None
    openai_base_url: str | None
    openai_model: str
    openai_voice: str
    timeout_s: float
    batch_ms: int
    lru_size: int
    cache_dir: Path
    espeak_voice: str
    espeak_rate: int
    nats_url: str
    pool_workers: int | None  # None: one per CPU
    metrics_port: int = 9094  # `python -m tts_worker`; 0: not served

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TtsConfig:
        key = env.get_opt("OPENAI_API_KEY", environ)
        provider = env.get_choice("TTS_PROVIDER", "auto", ("auto", "openai", "espeak"), environ)
        if provider == "auto":
            provider = "openai" if key else "espeak"
        if provider == "openai" and not key:
            raise ConfigError("TTS_PROVIDER=openai needs OPENAI_API_KEY")
        batch_ms = env.get_int("AUDIO_OUT_BATCH_MS", 100, environ, minimum=20)
        if batch_ms > 200:
            raise ConfigError(f"AUDIO_OUT_BATCH_MS must be <= 200 (the contract), got {batch_ms}")
        timeout_s = env.get_float("TTS_TIMEOUT_S", 5.0, environ, minimum=0.05)
        workers = env.get_int("TTS_POOL_WORKERS", 0, environ, minimum=0)
        return cls(
            provider=provider,
            openai_api_key=key,
            openai_base_url=env.get_opt("OPENAI_BASE_URL", environ),
            openai_model=env.get_str("OPENAI_TTS_MODEL", "tts-1", environ),
            openai_voice=env.get_str("OPENAI_TTS_VOICE", "alloy", environ),
            timeout_s=timeout_s,
            batch_ms=batch_ms,
            lru_size=env.get_int("TTS_LRU_SIZE", 256, environ, minimum=0),
            cache_dir=Path(env.get_str("CACHE_DIR", "assets/cache", environ)),
            espeak_voice=env.get_str("ESPEAK_VOICE", "fr", environ),
            espeak_rate=env.get_int("ESPEAK_RATE", 160, environ, minimum=80),
            nats_url=env.get_str("NATS_URL", "nats://127.0.0.1:4222", environ),
            pool_workers=workers or None,
            metrics_port=env.get_int("TTS_METRICS_PORT", 9094, environ, minimum=0),
        )
