"""JetStream streams and durable consumers, declared as data and created idempotently."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

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
    """How long the streams keep messages. The archiver owns these limits (its config reads
    them); every other process creates a missing stream with the defaults and leaves the
    limits of an existing one alone, so a service starting up never undoes a configured value.

    CALLS must outlive the archiver's downtime (its projection catches up from the stream) and
    AUDIO must outlive the gap between two `voicebot archive` runs: a week of audio at the
    default, bounded by bytes so a busy site cannot fill the disk (the oldest audio goes first:
    size AUDIO_MAX_GB for a few days of calls, about 115 MB per call-hour).
    """

    calls_days: float = 90
    audio_days: float = 7
    audio_max_bytes: int = 20 * 1024**3
    duplicate_window_s: float = 120


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
        ),
    ]


@dataclass(frozen=True, kw_only=True)
class ClaimConsumer:
    """A work-queue durable on `call.*.event.started`: each call goes to one instance of a kind.

    The owner keeps the started message in progress for the call's life and acks it at the end;
    if the owner dies the message is redelivered after `ack_wait` to another instance.
    """

    service: str
    ack_wait_s: float = 4.0

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


async def ensure_streams(js: JetStreamContext, retention: Retention | None = None) -> None:
    """Create or update the streams; safe to call from every process at every start.

    `retention` None keeps the limits of existing streams (only the archiver passes its
    configured ones); a missing stream is created with the defaults.
    """
    for cfg in stream_configs(retention or Retention()):
        try:
            info = await js.stream_info(cfg.name or "")
        except NotFoundError:
            await js.add_stream(cfg)
            continue
        if retention is None:
            cfg.max_age, cfg.max_bytes = info.config.max_age, info.config.max_bytes
        # Exists: update rather than add again (nats-server 2.15 answers a repeated add of a
        # byte-limited stream with "insufficient storage", counting its reservation twice).
        await js.update_stream(cfg)
    # Claim consumers exist before the first call, so no `started` is missed by a late worker.
    # (The archiver creates its own durable: it reads from the first message, whenever created.)
    for claim in CLAIMS.values():
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


async def ensure_claims(js: JetStreamContext, claim: ClaimConsumer) -> None:
    try:
        await js.add_consumer(CALLS, claim.config())
    except BadRequestError as e:
        if e.err_code != 10148:  # consumer already exists with a different config
            raise
        log.info("claim consumer %s exists with another config; keeping it", claim.durable)
