"""The STT worker's settings, read once from the environment and validated at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from events import env as envlib
from events.auth import Login
from events.env import ConfigError

ProviderName = Literal["deepgram", "whisper"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WHISPER_CACHE = PROJECT_ROOT / "var" / "models" / "whisper-base"

DEFAULT_WHISPER_PROMPT = (
    # A domain prompt steers spelling ("box internet", digits as "06 12 ..."); it must not list
    # the short answers: a prompt with "Oui. Non." makes the model hear "Non." in unclear audio.
    "Service après-vente : box internet, mobile. Mon numéro est le 07 45 29 81 03."
)


@dataclass(frozen=True, kw_only=True)
class SttConfig:
    provider: ProviderName = "whisper"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_login: Login = field(default_factory=Login)  # user `stt` in nats-auth.conf
    metrics_port: int = 9092  # /metrics and /health of `python -m stt_worker`; 0: not served
    api_timeout_s: float = 5.0
    deepgram_api_key: str | None = None
    deepgram_model: str = "nova-3"
    deepgram_language: str = "fr"
    deepgram_url: str | None = None  # None: Deepgram's cloud; tests point it at the loopback
    deepgram_endpointing_ms: int = 300
    deepgram_utterance_end_ms: int = 1000
    stt_workers: int = 1  # whisper inference processes
    whisper_threads: int = 1  # CTranslate2 intra-op threads per process, pinned
    whisper_cache_dir: Path = DEFAULT_WHISPER_CACHE
    whisper_prompt: str = DEFAULT_WHISPER_PROMPT
    # Turn-taking (stt_worker/turn.py): after `vad_pause_ms` of silence the utterance is
    # recognised; a transcript that reads as a finished answer ends the turn there, anything
    # else ends after `vad_min_silence_ms` of silence.
    vad_pause_ms: int = 250
    vad_min_silence_ms: int = 800
    vad_min_speech_ms: int = 120
    vad_max_utterance_ms: int = 12_000
    # A takeover re-reads the audio since the dead owner's last transcript, at most this far
    # back: it must exceed the claim's ack_wait (4 s) plus a fetch, or audio is skipped.
    takeover_rewind_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(
                f"STT_METRICS_PORT must be a TCP port (0-65535), got {self.metrics_port}"
            )
        if self.provider == "deepgram" and not self.deepgram_api_key:
            raise ConfigError("DEEPGRAM_API_KEY is required when STT_PROVIDER=deepgram")
        if self.vad_max_utterance_ms <= self.vad_min_speech_ms:
            raise ConfigError(
                f"VAD_MAX_UTTERANCE_MS ({self.vad_max_utterance_ms}) must exceed "
                f"VAD_MIN_SPEECH_MS ({self.vad_min_speech_ms})"
            )
        if self.vad_pause_ms > self.vad_min_silence_ms:
            raise ConfigError(
                f"VAD_PAUSE_MS ({self.vad_pause_ms}) must not exceed "
                f"VAD_MIN_SILENCE_MS ({self.vad_min_silence_ms})"
            )
        if self.vad_max_utterance_ms > 28_000:
            raise ConfigError(
                f"VAD_MAX_UTTERANCE_MS must be <= 28000 (Whisper's window), "
                f"got {self.vad_max_utterance_ms}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SttConfig:
        e = env
        key = envlib.get_opt("DEEPGRAM_API_KEY", e)
        choice = envlib.get_choice("STT_PROVIDER", "auto", ("auto", "deepgram", "whisper"), e)
        provider: ProviderName
        if choice == "auto":
            provider = "deepgram" if key else "whisper"
        else:
            provider = "deepgram" if choice == "deepgram" else "whisper"
        return cls(
            provider=provider,
            nats_url=envlib.get_str("NATS_URL", "nats://127.0.0.1:4222", e),
            nats_login=Login.from_env("stt_worker", e),
            metrics_port=envlib.get_int("STT_METRICS_PORT", 9092, e, minimum=0),
            api_timeout_s=envlib.get_float("API_TIMEOUT_S", 5.0, e, minimum=0.1),
            deepgram_api_key=key,
            deepgram_model=envlib.get_str("DEEPGRAM_MODEL", "nova-3", e),
            deepgram_language=envlib.get_str("DEEPGRAM_LANGUAGE", "fr", e),
            deepgram_url=envlib.get_opt("DEEPGRAM_URL", e),
            deepgram_endpointing_ms=envlib.get_int("DEEPGRAM_ENDPOINTING_MS", 300, e, minimum=10),
            deepgram_utterance_end_ms=envlib.get_int(
                "DEEPGRAM_UTTERANCE_END_MS", 1000, e, minimum=1000
            ),
            stt_workers=envlib.get_int("STT_WORKERS", 1, e, minimum=1),
            whisper_threads=envlib.get_int("WHISPER_THREADS", 1, e, minimum=1),
            whisper_cache_dir=Path(
                envlib.get_str("WHISPER_CACHE_DIR", str(DEFAULT_WHISPER_CACHE), e)
            ),
            whisper_prompt=envlib.get_str("WHISPER_PROMPT", DEFAULT_WHISPER_PROMPT, e),
            vad_pause_ms=envlib.get_int("VAD_PAUSE_MS", 250, e, minimum=64),
            vad_min_silence_ms=envlib.get_int("VAD_MIN_SILENCE_MS", 800, e, minimum=100),
            vad_min_speech_ms=envlib.get_int("VAD_MIN_SPEECH_MS", 120, e, minimum=20),
            vad_max_utterance_ms=envlib.get_int("VAD_MAX_UTTERANCE_MS", 12_000, e, minimum=500),
            takeover_rewind_s=envlib.get_float("STT_TAKEOVER_REWIND_S", 15.0, e, minimum=5.0),
        )
