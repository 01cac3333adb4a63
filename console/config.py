"""The console's settings, read once from the environment and validated at start-up."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from console.auth import Access, parse_users
from events import env
from events.auth import Login
from events.env import ConfigError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, kw_only=True)
class ConsoleConfig:
    nats_url: str
    database_url: str | None = field(default=None, repr=False)  # None: no search, no archive
    host: str = LOOPBACK
    port: int = 8090
    metrics_port: int = 9097
    nice: int = 10  # CPU priority below the call path's (events.runtime.yield_cpu)
    access: Access = field(default_factory=Access)
    workers: int = 1  # processes rendering audio (MP3 decoding, waveforms)
    max_clients: int = 50  # live streams served at once
    live_interval_s: float = 0.5  # the live page's updates are batched this often
    nats_login: Login = field(default_factory=Login)  # user `console` in nats-auth.conf
    host_forced: bool = False  # CONSOLE_HOST was not loopback, but nothing guards the door

    def __post_init__(self) -> None:
        for name, port in (
            ("CONSOLE_PORT", self.port),
            ("CONSOLE_METRICS_PORT", self.metrics_port),
        ):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be a TCP port (0-65535), got {port}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsoleConfig:
        access = Access(
            token=env.get_opt("CONSOLE_TOKEN", environ),
            users=parse_users(env.get_opt("CONSOLE_USERS", environ)),
        )
        host = env.get_str("CONSOLE_HOST", "0.0.0.0", environ)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"CONSOLE_HOST must be an IP address, got {host!r}") from None
        forced = False
        if access.open and not ipaddress.ip_address(host).is_loopback:
            # Nothing to check a visitor against: only this machine may come in.
            host, forced = LOOPBACK, True
        return cls(
            nats_url=env.get_str("NATS_URL", "nats://127.0.0.1:4222", environ),
            database_url=env.get_opt("DATABASE_URL", environ),
            host=host,
            port=env.get_int("CONSOLE_PORT", 8090, environ, minimum=0),
            metrics_port=env.get_int("CONSOLE_METRICS_PORT", 9097, environ, minimum=0),
            nice=env.get_int("CONSOLE_NICE", 10, environ, minimum=0),
            access=access,
            workers=env.get_int("CONSOLE_WORKERS", 1, environ, minimum=1),
            max_clients=env.get_int("CONSOLE_MAX_CLIENTS", 50, environ, minimum=1),
            live_interval_s=env.get_float("CONSOLE_LIVE_INTERVAL_S", 0.5, environ, minimum=0.05),
            nats_login=Login.from_env("console", environ),
            host_forced=forced,
        )

    def describe(self) -> str:
        """One line for the banner: where, and who may come in."""
        where = f"http://{self.host}:{self.port}"
        return f"{where} ({self.access.describe()})"
