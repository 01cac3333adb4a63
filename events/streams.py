"""JetStream streams and durable consumers, declared as data and created idempotently."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import nats
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from events import env

log = logging.getLogger("events.streams")

CALLS: Final = "CALLS"
AUDIO: Final = "AUDIO"

CALLS_SUBJECTS: Final = (
    "call.*.event.>",
    "call.*.transcript",
    "call.*.decision",
    "call.*.say",
    "call.*.playback",
    "call.*.control",
)
AUDIO_SUBJECTS: Final = ("call.*.audio.in", "call.*.audio.out")

DAY_S: Final = 86_400


@dataclass(frozen=True, kw_only=True)
class Retention:
    calls_days: float = 90
    audio_days: float = 7
    audio_max_bytes: int = 20 * 1024**3
    duplicate_window_s: float = 120
    replicas: int = 1  # 3 on a 3-node cluster: a node may die without losing a message

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Retention:
        e = environ
        return cls(
            calls_days=env.get_float("CALLS_RETENTION_DAYS", 90, e, minimum=0.001),
            audio_days=env.get_float("AUDIO_RETENTION_DAYS", 7, e, minimum=0.001),
            audio_max_bytes=env.get_int("AUDIO_MAX_BYTES", 20 * 1024**3, e, minimum=1024**2),
            replicas=env.get_int("STREAM_REPLICAS", 1, e, minimum=1),
        )


def stream_configs(r: Retention) -> list[api.StreamConfig]:
    return [
        api.StreamConfig(
            name=CALLS,
            subjects=list(CALLS_SUBJECTS),
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            max_age=r.calls_days * DAY_S,
            duplicate_window=r.duplicate_window_s,
            allow_direct=True,
            num_replicas=r.replicas,
        ),
        api.StreamConfig(
            name=AUDIO,
            subjects=list(AUDIO_SUBJECTS),
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            max_age=r.audio_days * DAY_S,
            max_bytes=r.audio_max_bytes,
            discard=api.DiscardPolicy.OLD,
            duplicate_window=r.duplicate_window_s,
            allow_direct=True,
            num_replicas=r.replicas,
        ),
    ]


@dataclass(frozen=True, kw_only=True)
class ClaimConsumer:
    """A work-queue durable on `call.*.event.started`: each call goes to one instance of a kind.

    The owner keeps the started message in progress for the call's life and acks it at the end;
    if the owner dies the message is redelivered after `ack_wait` to another instance
    (claims.py).
    """

    service: str
    # A dead owner's calls move after this long without its heartbeat (sent every quarter of
    # it): the caller must not wait more than ~3 s for a takeover.
    ack_wait_s: float = 2.0

    @property
    def durable(self) -> str:
        return f"{self.service}-claims"

    def config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.durable,
            filter_subject="call.*.event.started",
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=100_000,
        )


CLAIMS: Final = {
    name: ClaimConsumer(service=name) for name in ("stt_worker", "brain", "tts_worker")
}


# Fields we set, compared before updating a stream: an update is a proposal through the
# cluster's meta leader, and seven processes starting at once on a fresh 3-node cluster each
# updating both streams to what they already were timed out (5 s) and made a worker exit.
_COMPARED: Final = (
    "subjects",
    "retention",
    "storage",
    "max_age",
    "max_bytes",
    "discard",
    "duplicate_window",
    "num_replicas",
    "allow_direct",
)
READY_WITHIN_S: Final = 30.0  # a cluster that just started elects its leaders first
_RETRY_S: Final = 0.5


async def ensure_streams(
    js: JetStreamContext,
    retention: Retention | None = None,
    *,
    within_s: float = READY_WITHIN_S,
) -> None:
    """Create or update the streams; safe to call from every process at every start.

    Requests that time out (a cluster still electing its leaders) are tried again for
    `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            await _ensure_streams(js, retention or Retention.from_env())
            return
        except (nats.errors.TimeoutError, ServiceUnavailableError) as e:
            if time.monotonic() + _RETRY_S > deadline:
                raise
            log.warning("JetStream not ready (%r): trying again", e)
            await asyncio.sleep(_RETRY_S)


async def _ensure_streams(js: JetStreamContext, retention: Retention) -> None:
    for cfg in stream_configs(retention):
        try:
            info = await js.stream_info(cfg.name or "")
        except NotFoundError:
            await js.add_stream(cfg)
            continue
        # Exists: update rather than add again (nats-server 2.15 answers a repeated add of a
        # byte-limited stream with "insufficient storage", counting its reservation twice),
        # and only when something changed.
        if _differs(info.config, cfg):
            await js.update_stream(cfg)
    # Claim consumers exist before the first call, so no `started` is missed by a late worker.
    for claim in CLAIMS.values():
        await ensure_claims(js, claim)
    log.debug("streams ready: %s, %s", CALLS, AUDIO)


def _differs(have: api.StreamConfig, want: api.StreamConfig) -> bool:
    return any(_norm(getattr(have, f)) != _norm(getattr(want, f)) for f in _COMPARED)


def _norm(value: object) -> object:
    """Server and client spell the same setting differently: enums or strings, ints or
    floats, None or -1 for "no limit"."""
    if value is None:
        return -1.0
    if isinstance(value, list):
        return sorted(str(v) for v in value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(getattr(value, "value", value))


async def ensure_claims(js: JetStreamContext, claim: ClaimConsumer) -> None:
    try:
        await js.add_consumer(CALLS, claim.config())
    except BadRequestError as e:
        if e.err_code != 10148:  # consumer already exists with a different config
            raise
        log.info("claim consumer %s exists with another config; keeping it", claim.durable)
