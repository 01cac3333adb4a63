"""The edge's settings, read once from the environment and validated at start-up."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from events import env as envlib
from events.auth import Login
from events.env import ConfigError


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    host: str = "0.0.0.0"
    port: int = 9090
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    metrics_port: int = 9091
    nats_url: str = "nats://127.0.0.1:4222"
    nats_login: Login = field(default_factory=Login)  # user `edge` in nats-auth.conf
    max_concurrent_calls: int = 20
    allowed_peers: tuple[str, ...] = ()  # empty: every peer may connect
    api_token: str | None = field(default=None, repr=False)  # Bearer for PUT /calls/{uuid}/caller
    cache_dir: Path = Path("assets/cache")
    edge_id: str = ""
    # Caller audio per audio.in message; the onset and the end of a line go frame by frame
    # whatever this is (edge/inbound.py). 100: a fifth of the messages of 20 through the edge,
    # NATS and the STT worker (bench/capacity.py).
    audio_in_batch_ms: int = 100
    uuid_timeout_s: float = 2.0  # Asterisk sends the UUID within ms; 2 s is its own watchdog
    frame_timeout_s: float = 2.0  # a message whose bytes stop arriving mid-way ends the call
    prebuffer_ms: int = 40  # jitter queue filled before an utterance starts
    # ... and how deep it may grow after utterances ran dry (edge/prebuffer.py); equal to
    # prebuffer_ms: fixed.
    prebuffer_max_ms: int = 160
    max_queued_out_s: float = 120.0  # bot audio queued per call before frames are refused
    inbound_max_ahead_s: float = 1.0  # caller audio allowed ahead of real time before "flood"
    hangup_drain_max_s: float = 30.0  # longest wait for queued audio before a hang-up
    outcome_ttl_s: float = 3600.0
    bargein_vad: bool = False  # cut interruptible utterances on local voice activity
    vad_threshold_dbfs: float = -35.0
    vad_min_speech_ms: int = 60
    vad_hangover_ms: int = 300  # quiet after speech that ends a caller line
    hold_after_s: float = 2.0  # the bot owes an answer and nothing plays: hold phrase
    unavailable_after_s: float = 12.0  # still nothing: "unavailable" phrase, then the call ends
    unavailable_outcome: str = "transfer:technicians"  # how, for the dialplan's outcome lookup
    outbox_close_s: float = 30.0  # how long a finished call's events may wait for NATS
    rt_priority: int = 10  # SCHED_RR priority for the pacing loop; 0: normal scheduling

    def __post_init__(self) -> None:
        for name, port in (
            ("AUDIOSOCKET_PORT", self.port),
            ("HTTP_PORT", self.http_port),
            ("METRICS_PORT", self.metrics_port),
        ):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be a TCP port (0-65535), got {port}")
        if self.audio_in_batch_ms % 20:
            raise ConfigError(
                f"AUDIO_IN_BATCH_MS must be a multiple of 20, got {self.audio_in_batch_ms}"
            )
        if self.prebuffer_max_ms < self.prebuffer_ms:
            raise ConfigError(
                f"EDGE_PREBUFFER_MAX_MS ({self.prebuffer_max_ms}) must be at least "
                f"EDGE_PREBUFFER_MS ({self.prebuffer_ms})"
            )
        if self.unavailable_after_s <= self.hold_after_s:
            raise ConfigError(
                f"EDGE_UNAVAILABLE_AFTER_S ({self.unavailable_after_s}) must exceed "
                f"EDGE_HOLD_AFTER_S ({self.hold_after_s})"
            )
        if not (
            self.unavailable_outcome == "hangup" or self.unavailable_outcome.startswith("transfer:")
        ):
            raise ConfigError(
                "EDGE_UNAVAILABLE_OUTCOME must be hangup or transfer:<target>, "
                f"got {self.unavailable_outcome!r}"
            )
        for peer in self.allowed_peers:
            try:
                ipaddress.ip_address(peer)
            except ValueError:
                raise ConfigError(f"ALLOWED_PEERS: {peer!r} is not an IP address") from None

    @property
    def allowed_ips(self) -> frozenset[str]:
        """Allowed peers in canonical form (so '::ffff:10.0.0.1' matches '10.0.0.1')."""
        return frozenset(canonical_ip(p) for p in self.allowed_peers)

    @property
    def write_access(self) -> str:
        """Who may register a caller through the HTTP API, for the start-up banner."""
        checks = []
        if self.allowed_peers:
            checks.append(f"peers in ALLOWED_PEERS ({', '.join(self.allowed_peers)})")
        if self.api_token is not None:
            checks.append("a request with the Bearer token API_TOKEN")
        if checks:
            return " and ".join(checks)
        return (
            "loopback clients only: neither API_TOKEN nor ALLOWED_PEERS is set, and anyone "
            "who can reach the port could otherwise make the bot believe a caller is any customer"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeConfig:
        e = env
        return cls(
            host=envlib.get_str("AUDIOSOCKET_HOST", "0.0.0.0", e),
            port=envlib.get_int("AUDIOSOCKET_PORT", 9090, e, minimum=0),
            http_host=envlib.get_str("HTTP_HOST", "0.0.0.0", e),
            http_port=envlib.get_int("HTTP_PORT", 8080, e, minimum=0),
            metrics_port=envlib.get_int("METRICS_PORT", 9091, e, minimum=0),
            nats_url=envlib.get_str("NATS_URL", "nats://127.0.0.1:4222", e),
            nats_login=Login.from_env("edge", e),
            max_concurrent_calls=envlib.get_int("MAX_CONCURRENT_CALLS", 20, e, minimum=1),
            allowed_peers=envlib.get_list("ALLOWED_PEERS", e),
            api_token=envlib.get_opt("API_TOKEN", e),
            cache_dir=Path(envlib.get_str("CACHE_DIR", "assets/cache", e)),
            edge_id=envlib.get_str("EDGE_ID", f"{socket.gethostname()}-{os.getpid()}", e),
            audio_in_batch_ms=envlib.get_int("AUDIO_IN_BATCH_MS", 100, e, minimum=20),
            uuid_timeout_s=envlib.get_float("EDGE_UUID_TIMEOUT_S", 2.0, e, minimum=0.05),
            frame_timeout_s=envlib.get_float("EDGE_FRAME_TIMEOUT_S", 2.0, e, minimum=0.05),
            prebuffer_ms=envlib.get_int("EDGE_PREBUFFER_MS", 40, e, minimum=20),
            prebuffer_max_ms=envlib.get_int("EDGE_PREBUFFER_MAX_MS", 160, e, minimum=20),
            max_queued_out_s=envlib.get_float("EDGE_MAX_QUEUED_OUT_S", 120.0, e, minimum=1.0),
            inbound_max_ahead_s=envlib.get_float("EDGE_INBOUND_MAX_AHEAD_S", 1.0, e, minimum=0.1),
            hangup_drain_max_s=envlib.get_float("EDGE_HANGUP_DRAIN_MAX_S", 30.0, e),
            outcome_ttl_s=envlib.get_float("EDGE_OUTCOME_TTL_S", 3600.0, e, minimum=1.0),
            bargein_vad=envlib.get_bool("EDGE_BARGEIN_VAD", False, e),
            vad_threshold_dbfs=envlib.get_float(
                "EDGE_VAD_THRESHOLD_DBFS", -35.0, e, minimum=-120.0
            ),
            vad_min_speech_ms=envlib.get_int("EDGE_VAD_MIN_SPEECH_MS", 60, e, minimum=20),
            vad_hangover_ms=envlib.get_int("EDGE_VAD_HANGOVER_MS", 300, e, minimum=60),
            hold_after_s=envlib.get_float("EDGE_HOLD_AFTER_S", 2.0, e, minimum=0.5),
            unavailable_after_s=envlib.get_float("EDGE_UNAVAILABLE_AFTER_S", 12.0, e, minimum=1.0),
            unavailable_outcome=envlib.get_str(
                "EDGE_UNAVAILABLE_OUTCOME", "transfer:technicians", e
            ),
            outbox_close_s=envlib.get_float("EDGE_OUTBOX_CLOSE_S", 30.0, e, minimum=0.1),
            rt_priority=envlib.get_int("EDGE_RT_PRIORITY", 10, e, minimum=0),
        )


def canonical_ip(text: str) -> str:
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
