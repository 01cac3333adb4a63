"""The archiver's settings, read once from the environment and validated at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from events import env
from events.auth import Login
from events.env import ConfigError
from events.streams import DAY_S, Retention

PROJECT = Path(__file__).resolve().parent.parent
# MPEG-2.5 Layer III (8 kHz) bitrates libmp3lame accepts.
BITRATES_K = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)


def parse_bitrate(text: str, name: str = "ARCHIVE_BITRATE") -> int:
    """`64k`, `64` or `64000` -> 64000 bits/s; only the rates an 8 kHz MP3 can have."""
    raw = text.strip().lower().removesuffix("k")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a bitrate like 64k, got {text!r}") from None
    kbps = value // 1000 if value >= 1000 else value
    if kbps not in BITRATES_K:
        allowed = ", ".join(f"{k}k" for k in BITRATES_K)
        raise ConfigError(f"{name} must be one of {allowed} for 8 kHz MP3, got {text!r}")
    return kbps * 1000


@dataclass(frozen=True, kw_only=True)
class ArchiverConfig:
    nats_url: str
    database_url: str
    # The projection (python -m archiver)
    batch: int  # CALLS messages per fetch, written in one transaction
    retry_max_s: float  # longest pause between attempts while PostgreSQL is down
    metrics_port: int  # when run alone; 0: off
    nice: int  # CPU priority below the call path's (events.runtime.yield_cpu)
    # voicebot archive
    archive_dir: Path
    bitrate: int  # bits/s
    workers: int
    settle_s: float  # a call ended less than this ago is left for the next run
    stale_after_s: float  # a call with no `ended` and no event for this long is closed
    # Retention
    retention_days: float  # MP3s and rows older than this are deleted by --prune
    streams: Retention
    nats_login: Login = field(default_factory=Login)  # user `archiver` in nats-auth.conf

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ArchiverConfig:
        database_url = env.get_opt("DATABASE_URL", environ)
        if database_url is None:
            raise ConfigError("the archiver needs DATABASE_URL (the PostgreSQL it writes to)")
        archive_dir = Path(env.get_str("ARCHIVE_DIR", "logs/calls", environ))
        retention_days = env.get_float("ARCHIVE_RETENTION_DAYS", 365.0, environ, minimum=1.0)
        return cls(
            nats_url=env.get_str("NATS_URL", "nats://127.0.0.1:4222", environ),
            database_url=database_url,
            batch=env.get_int("ARCHIVER_BATCH", 256, environ, minimum=1),
            retry_max_s=env.get_float("ARCHIVER_RETRY_MAX_S", 5.0, environ, minimum=0.1),
            metrics_port=env.get_int("ARCHIVER_METRICS_PORT", 9096, environ, minimum=0),
            nice=env.get_int("ARCHIVER_NICE", 10, environ, minimum=0),
            archive_dir=archive_dir if archive_dir.is_absolute() else PROJECT / archive_dir,
            bitrate=parse_bitrate(env.get_str("ARCHIVE_BITRATE", "64k", environ)),
            workers=env.get_int("ARCHIVE_WORKERS", 1, environ, minimum=1),
            settle_s=env.get_float("ARCHIVE_SETTLE_S", 2.0, environ),
            stale_after_s=env.get_float("ARCHIVE_STALE_AFTER_S", 3600.0, environ, minimum=60.0),
            retention_days=retention_days,
            streams=Retention.from_env(environ),
            nats_login=Login.from_env("archiver", environ),
        )

    @property
    def retention_s(self) -> float:
        return self.retention_days * DAY_S
