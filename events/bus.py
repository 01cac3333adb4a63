"""Bus helpers shared by every process: connect, publish, typed subscribe, stream replay.

Control-plane messages go through JetStream with an ack and a `Nats-Msg-Id` (a retry within the
duplicate window is stored once). Audio goes out as core publishes (no ack round trip on the hot
path); the AUDIO stream still captures it. Streams are read through `StreamTail` (tail.py),
which survives reconnects and server restarts. Call ownership is in claims.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError
from prometheus_client import Counter, Gauge

from events import codec, streams, subjects
from events.auth import Login
from events.outbox import Outbox
from events.tail import ALL, Start, StreamTail

log = logging.getLogger("events.bus")

BAD_MESSAGES: Final = Counter(
    "voicebot_bad_messages_total",
    "Messages that could not be decoded and were skipped",
    ["service", "kind"],
)
PUBLISHED: Final = Counter(
    "voicebot_events_published_total", "Control-plane events published", ["service", "kind"]
)

NATS_CONNECTED: Final = Gauge(
    "voicebot_nats_connected", "1 while this process is connected to NATS", ["service"]
)
NATS_RECONNECTS: Final = Counter(
    "voicebot_nats_reconnects_total", "Times this process got its NATS connection back", ["service"]
)
NATS_ERRORS: Final = Counter(
    "voicebot_nats_errors_total",
    "Errors the NATS server reported (a permissions violation among them)",
    ["service"],
)

PUBLISH_TIMEOUT_S: Final = 5.0
ATTEMPT_TIMEOUT_S: Final = 2.0  # one try of an acknowledged publish; then it is tried again
RETRY_S: Final = (0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded message with where it came from."""

    subject: str
    event: Any
    stream_seq: int = 0  # 0 when not read from a stream
    pending: int = 0  # messages still to replay after this one (ordered consumers)


class Bus:
    def __init__(self, nc: Client, service: str) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self.service = service
        self._reconnect_listeners: list[Callable[[], None]] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        service: str,
        *,
        login: Login | None = None,
        connect_timeout: float = 5.0,
    ) -> Bus:
        """Connect to NATS at `url` (several servers of a cluster: comma-separated) as the
        user of `login` (nats.conf: one user per service), or anonymously."""
        bus: Bus | None = None
        connected = NATS_CONNECTED.labels(service)

        async def on_disconnect() -> None:
            connected.set(0)
            # A disconnect while we drain or close is expected, not news.
            if not nc.is_closed and not nc.is_draining:
                log.warning("%s: disconnected from NATS, reconnecting", service)

        async def on_reconnect() -> None:
            connected.set(1)
            NATS_RECONNECTS.labels(service).inc()
            log.info("%s: reconnected to NATS", service)
            if bus is not None:
                for listener in list(bus._reconnect_listeners):
                    listener()

        async def on_error(e: Exception) -> None:
            # A permissions violation lands here (the request itself then times out): the
            # subject it names is what this service's user in nats.conf may not do.
            NATS_ERRORS.labels(service).inc()
            log.warning("%s: NATS error: %s", service, e)

        credentials = login.connect_options(url) if login is not None else {}

        servers = [u.strip() for u in url.split(",") if u.strip()]
        nc = await nats.connect(
            servers,
            name=f"voicebot-{service}",
            connect_timeout=connect_timeout,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            allow_reconnect=True,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
            pending_size=64 * 1024 * 1024,
            drain_timeout=2,  # a tail being torn down must not hold shutdown
            **credentials,
        )
        connected.set(1)
        bus = cls(nc, service)
        return bus

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call `listener()` each time the connection comes back (tails re-create consumers)."""
        self._reconnect_listeners.append(listener)

    def off_reconnect(self, listener: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._reconnect_listeners.remove(listener)

    async def close(self) -> None:
        try:
            await self.nc.drain()
        except Exception:
            with contextlib.suppress(Exception):
                await self.nc.close()

    # --- publishing ---------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        event: msgspec.Struct,
        *,
        msg_id: str | None = None,
        give_up_after_s: float | None = None,
    ) -> int:
        """Publish a control-plane event to JetStream and wait for its acknowledgement;
        returns its stream sequence.

        Transient failures (a NATS restart, a cluster electing a leader) are retried until
        acknowledged or `give_up_after_s`; every try carries the same `Nats-Msg-Id`, so a try
        that did land before its answer was lost is stored once.
        """
        body = codec.encode(event)
        headers = {"Nats-Msg-Id": msg_id or uuid.uuid4().hex}
        kind = subjects.parse(subject).kind
        deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
        attempt = 0
        while True:
            try:
                ack = await self.js.publish(
                    subject, body, timeout=ATTEMPT_TIMEOUT_S, headers=headers
                )
            except (nats.errors.ConnectionClosedError, nats.errors.MaxPayloadError):
                raise
            except (nats.errors.Error, TimeoutError) as e:
                if isinstance(e, BadRequestError):
                    raise  # the server refused the message itself: retrying will not help
                delay = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                attempt += 1
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise
                if attempt in (1, 5) or attempt % 20 == 0:
                    log.warning("publish on %s failed (%r), retrying", subject, e)
                await asyncio.sleep(delay)
                continue
            PUBLISHED.labels(self.service, kind).inc()
            return int(ack.seq)

    def outbox(self, name: str) -> Outbox:
        """An ordered, bounded, retrying publisher for one call's events (see outbox.py)."""
        return Outbox(self, name)

    async def publish_audio(self, subject: str, pcm: bytes, headers: dict[str, str]) -> None:
        await self.nc.publish(subject, pcm, headers=headers)

    # --- subscribing --------------------------------------------------------------------

    def decode(self, msg: Msg) -> Envelope | None:
        """Decode a message by its subject, or count it as bad and return None."""
        try:
            event = codec.decode_subject(msg.subject, msg.data)
        except codec.BadMessage as e:
            kind = _kind_label(msg.subject)
            BAD_MESSAGES.labels(self.service, kind).inc()
            log.warning("%s: skipped undecodable message on %s: %s", self.service, msg.subject, e)
            return None
        seq = pending = 0
        if msg.reply and msg.reply.startswith("$JS.ACK"):
            meta = msg.metadata
            seq, pending = meta.sequence.stream, meta.num_pending
        return Envelope(msg.subject, event, seq, pending)

    async def subscribe(
        self,
        subject: str,
        handler: Callable[[Envelope], Awaitable[None]],
        *,
        queue: str = "",
    ) -> Any:
        """Core subscription with decoding; undecodable messages are counted and skipped.
        Audio that a wildcard (`call.<id>.>`) also matches is not an event: it is passed over."""

        async def on_msg(msg: Msg) -> None:
            if ".audio." in msg.subject:
                return
            env = self.decode(msg)
            if env is None:
                return
            try:
                await handler(env)
            except Exception:
                log.exception("%s: handler failed on %s", self.service, msg.subject)

        return await self.nc.subscribe(subject, queue=queue, cb=on_msg)

    def tail(
        self, stream: str, subject_filters: list[str], *, start: Start = ALL, name: str = ""
    ) -> StreamTail:
        """A stream followed in order across reconnects (start it, or use `async with`)."""
        return StreamTail(self, stream, subject_filters, start=start, name=name)

    async def replay(
        self,
        subject: str | Sequence[str],
        *,
        stream: str = streams.CALLS,
        follow: bool = True,
        start_seq: int | None = None,
    ) -> AsyncIterator[Envelope]:
        """Every stored message of `subject` (or of several subjects, interleaved as stored) in
        order, then (if `follow`) new ones live, across NATS restarts. Undecodable messages are
        counted and skipped."""
        wanted = [subject] if isinstance(subject, str) else list(subject)
        if not follow:
            for one in wanted:
                info = await self.js.stream_info(stream, subjects_filter=one)
                if info.state.subjects:
                    break
            else:
                return
        start = ALL if start_seq is None else Start.at_seq(start_seq)
        async with self.tail(stream, wanted, start=start) as tail:
            if not follow and tail.pending_at_start == 0 and tail.backlog == 0:
                return
            while True:
                msg = await tail.get()
                env = self.decode(msg)
                done = not follow and msg.metadata.num_pending == 0
                if env is not None:
                    yield env
                if done:
                    return

    async def replay_raw(
        self, subject: str, *, stream: str = streams.AUDIO, start_time: float | None = None
    ) -> AsyncIterator[Msg]:
        """Raw messages (audio) of `subject` from the stream, from `start_time` (wall clock,
        seconds) or from the beginning, then live, across NATS restarts."""
        start = ALL if start_time is None else Start.at_time(start_time)
        async with self.tail(stream, [subject], start=start) as tail:
            while True:
                yield await tail.get()

    async def history(self, subject: str | Sequence[str]) -> list[Envelope]:
        """Everything stored so far for a subject, or several (no follow)."""
        return [env async for env in self.replay(subject, follow=False)]

    async def call_ended(self, call_id: str) -> bool:
        try:
            await self.js.get_last_msg(streams.CALLS, subjects.event(call_id, "ended"))
        except NotFoundError:
            return False
        return True


def _kind_label(subject: str) -> str:
    try:
        return subjects.parse(subject).kind
    except subjects.BadSubject:
        return "unknown"
