"""The TTS worker's settings, read once from the environment and validated at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from events import env as envlib
from events.auth import Login
from events.env import ConfigError


@dataclass(frozen=True, kw_only=True)
class TtsConfig:
    provider: str = "espeak"  # openai | espeak (auto resolved)
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "tts-1"
    openai_voice: str = "alloy"
    timeout_s: float = 5.0
    batch_ms: int = 100  # bot audio per audio.out message
    lru_size: int = 256
    cache_dir: Path = Path("assets/cache")
    espeak_voice: str = "fr"
    espeak_rate: int = 160
    nats_url: str = "nats://127.0.0.1:4222"
    nats_login: Login = field(default_factory=Login)  # user `tts` in nats-auth.conf
    pool_workers: int | None = None  # None: one per CPU
    metrics_port: int = 9094  # /metrics and /health of `python -m tts_worker`; 0: not served

    def __post_init__(self) -> None:
        if self.provider == "openai" and not self.openai_api_key:
            raise ConfigError("TTS_PROVIDER=openai needs OPENAI_API_KEY")
        if not 20 <= self.batch_ms <= 200 or self.batch_ms % 20:
            raise ConfigError(
                f"AUDIO_OUT_BATCH_MS must be a multiple of 20 from 20 to 200 (the contract), "
                f"got {self.batch_ms}"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(
                f"TTS_METRICS_PORT must be a TCP port (0-65535), got {self.metrics_port}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TtsConfig:
        e = env
        key = envlib.get_opt("OPENAI_API_KEY", e)
        provider = envlib.get_choice("TTS_PROVIDER", "auto", ("auto", "openai", "espeak"), e)
        if provider == "auto":
            provider = "openai" if key else "espeak"
        workers = envlib.get_int("TTS_POOL_WORKERS", 0, e, minimum=0)
        return cls(
            provider=provider,
            openai_api_key=key,
            openai_base_url=envlib.get_opt("OPENAI_BASE_URL", e),
            openai_model=envlib.get_str("OPENAI_TTS_MODEL", "tts-1", e),
            openai_voice=envlib.get_str("OPENAI_TTS_VOICE", "alloy", e),
            timeout_s=envlib.get_float("TTS_TIMEOUT_S", 5.0, e, minimum=0.05),
            batch_ms=envlib.get_int("AUDIO_OUT_BATCH_MS", 100, e, minimum=20),
            lru_size=envlib.get_int("TTS_LRU_SIZE", 256, e, minimum=0),
            cache_dir=Path(envlib.get_str("CACHE_DIR", "assets/cache", e)),
            espeak_voice=envlib.get_str("ESPEAK_VOICE", "fr", e),
            espeak_rate=envlib.get_int("ESPEAK_RATE", 160, e, minimum=80),
            nats_url=envlib.get_str("NATS_URL", "nats://127.0.0.1:4222", e),
            nats_login=Login.from_env("tts_worker", e),
            pool_workers=workers or None,
            metrics_port=envlib.get_int("TTS_METRICS_PORT", 9094, e, minimum=0),
        )
