"""JetStream streams and durable consumers, declared as data and created idempotently."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from nats.errors import NoRespondersError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BadRequestError, NotFoundError, ServiceUnavailableError

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
# nats-server 2.15 caps a stream at 1000 consumers unless the stream sets its own limit (and -1
# no longer means unlimited). Each live call holds three CALLS tails (brain, TTS, STT) and one
# AUDIO tail (STT): at the default, about 330 concurrent calls, and the burst of 200 calls
# starting together was refused consumers ("maximum consumers limit reached").
MAX_CONSUMERS: Final = 20_000
PERSIST_MODE_IS_FIXED: Final = 10052  # nats-server: "can not change persist mode"


@dataclass(frozen=True, kw_only=True)
class Retention:
    """How long the streams keep messages, read from the environment (CALLS_RETENTION_DAYS,
    AUDIO_RETENTION_DAYS, AUDIO_MAX_GB, STREAM_REPLICAS). They are applied by whoever manages
    the streams (the admin: `voicebot streams`, `voicebot up`); a service starting up only
    creates what is missing and never changes an existing stream.

    CALLS must outlive the archiver's downtime (its projection catches up from the stream) and
    AUDIO must outlive the gap between two `voicebot archive` runs: a week of audio at the
    default, bounded by bytes so a busy site cannot fill the disk (the oldest audio goes first:
    size AUDIO_MAX_GB for a few days of calls, about 115 MB per call-hour).
    """

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
            audio_max_bytes=int(env.get_float("AUDIO_MAX_GB", 20.0, e, minimum=0.1) * 1024**3),
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
            max_consumers=MAX_CONSUMERS,
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
            max_consumers=MAX_CONSUMERS,
            # Audio is published without acks, at 50 messages a second per call each way: with
            # nats.conf's `sync_interval: always` every one was fsynced, and at 200 calls the
            # server stored fewer than half of them (and the CALLS acks queued behind). Audio
            # flushed asynchronously keeps up; the events stay synced. (ADR-56; R1 only: a
            # replicated stream is kept by its replicas.)
            persist_mode=api.PersistMode.ASYNC if r.replicas == 1 else None,
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
    "persist_mode",
    "max_consumers",
)
READY_WITHIN_S: Final = 60.0  # a cluster that just started elects its leaders first
_RETRY_S: Final = 0.5


async def ensure_streams(
    js: JetStreamContext,
    retention: Retention | None = None,
    *,
    within_s: float = READY_WITHIN_S,
    manage: bool = True,
) -> None:
    """Create or update the streams and the claim consumers; safe to call at every start.

    `manage=False` is how a service checks them at start-up: it creates what is missing (a
    development server with no users) but never changes an existing stream, which nats.conf
    allows only the admin user (`voicebot streams`, `voicebot up`): a compromised service must
    not be able to shorten the retention of the calls' history.

    The limits (retention, replicas) are the environment's (`Retention.from_env`: the same
    variables everywhere). A cluster that just started answers JetStream requests only once it
    elected its leaders, and a service may start before the admin created the streams: requests
    that time out are tried again for `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            await _ensure_streams(js, retention or Retention.from_env(), manage=manage)
            return
        except (TimeoutError, ServiceUnavailableError, NoRespondersError) as e:
            if time.monotonic() + _RETRY_S > deadline:
                raise
            log.warning("JetStream not ready (%r): trying again", e)
            await asyncio.sleep(_RETRY_S)


async def _ensure_streams(js: JetStreamContext, retention: Retention, *, manage: bool) -> None:
    for cfg in stream_configs(retention):
        try:
            info = await js.stream_info(cfg.name or "")
        except NotFoundError:
            await js.add_stream(cfg)
            continue
        if not manage:
            continue
        # Exists: update rather than add again (nats-server 2.15 answers a repeated add of a
        # byte-limited stream with "insufficient storage", counting its reservation twice),
        # and only when something changed.
        if not _differs(info.config, cfg):
            continue
        try:
            await js.update_stream(cfg)
        except APIError as e:
            if e.err_code != PERSIST_MODE_IS_FIXED:
                raise
            # A stream created by an older release: its persist mode stays until the stream is
            # re-created (that deletes its messages, so it is not done behind anyone's back).
            log.warning(
                "stream %s keeps its persist mode (%s): delete the stream to get %s",
                cfg.name,
                e.description,
                cfg.persist_mode,
            )
            await js.update_stream(dataclasses.replace(cfg, persist_mode=info.config.persist_mode))
    # Claim consumers exist before the first call, so no `started` is missed by a late worker.
    # (The archiver creates its own durable: it reads from the first message, whenever created.)
    for claim in CLAIMS.values():
        if manage:
            await ensure_claims(js, claim)
            continue
        try:
            await js.consumer_info(CALLS, claim.durable)
        except NotFoundError:
            await ensure_claims(js, claim)
    log.debug("streams ready: %s, %s", CALLS, AUDIO)


@dataclass(frozen=True, kw_only=True)
class DurableConsumer:
    """A durable pull consumer that reads a whole stream in order, from its first message.

    Used by the archiver's projection: acks are explicit and sent only once the rows of a
    message are committed, so an unacknowledged message is redelivered after `ack_wait_s`
    (the archiver keeps a batch it cannot commit in progress while it retries).
    """

    durable: str
    stream: str = CALLS
    ack_wait_s: float = 30.0
    max_ack_pending: int = 10_000

    def config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
        )


ARCHIVER: Final = DurableConsumer(durable="archiver")


async def ensure_durable(js: JetStreamContext, consumer: DurableConsumer) -> None:
    try:
        await js.add_consumer(consumer.stream, consumer.config())
    except BadRequestError as e:
        if e.err_code != 10148:  # consumer already exists with a different config
            raise
        log.info("consumer %s exists with another config; keeping it", consumer.durable)


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
