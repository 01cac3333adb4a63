"""Bus helpers shared by every process: connect, publish, typed subscribe, call claims.

Control-plane messages go through JetStream with an ack and a `Nats-Msg-Id` (a retry within the
duplicate window is stored once). Audio goes out as core publishes (no ack round trip on the hot
path); the AUDIO stream still captures it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from prometheus_client import Counter

from events import codec, schemas, streams, subjects

log = logging.getLogger("events.bus")

BAD_MESSAGES: Final = Counter(
    "voicebot_bad_messages_total",
    "Messages that could not be decoded and were skipped",
    ["service", "kind"],
)
PUBLISHED: Final = Counter(
    "voicebot_events_published_total", "Control-plane events published", ["service", "kind"]
)

PUBLISH_TIMEOUT_S: Final = 5.0


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
        self._queue: asyncio.Queue[tuple[str, bytes, str | None]] = asyncio.Queue()
        self._publisher: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, service: str, *, connect_timeout: float = 5.0) -> Bus:
        async def on_disconnect() -> None:
            # A disconnect while we drain or close is expected, not news.
            if not nc.is_closed and not nc.is_draining:
                log.warning("%s: disconnected from NATS, reconnecting", service)

        async def on_reconnect() -> None:
            log.info("%s: reconnected to NATS", service)

        async def on_error(e: Exception) -> None:
            log.warning("%s: NATS error: %s", service, e)

        nc = await nats.connect(
            url,
            name=f"voicebot-{service}",
            connect_timeout=connect_timeout,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
            pending_size=64 * 1024 * 1024,
            drain_timeout=2,  # an ordered consumer being torn down must not hold shutdown
        )
        return cls(nc, service)

    async def close(self) -> None:
        if self._publisher is not None:
            await self._queue.join()
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        try:
            await self.nc.drain()
        except Exception:
            with contextlib.suppress(Exception):
                await self.nc.close()

    # --- publishing ---------------------------------------------------------------------

    async def publish(
        self, subject: str, event: msgspec.Struct, *, msg_id: str | None = None
    ) -> int:
        """Publish a control-plane event to JetStream; returns its stream sequence."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        ack = await self.js.publish(subject, codec.encode(event), headers=headers)
        PUBLISHED.labels(self.service, subjects.parse(subject).kind).inc()
        return int(ack.seq)

    def publish_soon(
        self, subject: str, event: msgspec.Struct, *, msg_id: str | None = None
    ) -> None:
        """Queue a publish for a background task, in order; for hot paths that must not await."""
        self._queue.put_nowait((subject, codec.encode(event), msg_id))
        if self._publisher is None:
            self._publisher = asyncio.create_task(self._drain_queue(), name="bus-publisher")

    async def _drain_queue(self) -> None:
        while True:
            subject, body, msg_id = await self._queue.get()
            try:
                headers = {"Nats-Msg-Id": msg_id} if msg_id else None
                for attempt in range(3):
                    try:
                        await self.js.publish(subject, body, headers=headers)
                        PUBLISHED.labels(self.service, subjects.parse(subject).kind).inc()
                        break
                    except (NatsTimeout, nats.errors.ConnectionReconnectingError) as e:
                        log.warning("publish %s failed (%s), attempt %d", subject, e, attempt + 1)
                        await asyncio.sleep(0.2 * (attempt + 1))
                else:
                    log.error("dropped event on %s after 3 attempts", subject)
            except Exception:
                log.exception("publish of %s failed", subject)
            finally:
                self._queue.task_done()

    async def flush_soon(self) -> None:
        """Wait until every `publish_soon` event is acknowledged."""
        await self._queue.join()

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

    async def replay(
        self,
        subject: str,
        *,
        stream: str = streams.CALLS,
        follow: bool = True,
        start_seq: int | None = None,
    ) -> AsyncIterator[Envelope]:
        """Every stored message of `subject` in order, then (if `follow`) new ones live.

        An ordered consumer: no state on the server, gaps are re-fetched by the client.
        Undecodable messages are counted and skipped.
        """
        if not follow:
            info = await self.js.stream_info(stream, subjects_filter=subject)
            if not info.state.subjects:
                return
        kwargs: dict[str, Any] = {}
        if start_seq is not None:
            cfg = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq
            )
            kwargs["config"] = cfg
        else:
            kwargs["deliver_policy"] = api.DeliverPolicy.ALL
        async with self._ordered(subject, stream, **kwargs) as queue:
            while True:
                if follow:
                    msg = await queue.get()
                else:
                    try:
                        async with asyncio.timeout(0.5):
                            msg = await queue.get()
                    except TimeoutError:
                        return  # history only: nothing more is stored
                env = self.decode(msg)
                if env is not None:
                    yield env
                    if not follow and env.pending == 0:
                        return
                elif not follow and msg.metadata.num_pending == 0:
                    return

    async def replay_raw(
        self, subject: str, *, stream: str = streams.AUDIO, start_time: float | None = None
    ) -> AsyncIterator[Msg]:
        """Raw messages (audio) of `subject` from the stream, from `start_time` (wall clock,
        seconds) or from the beginning, then live. Ordered consumer, as `replay`."""
        if start_time is None:
            cfg = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        else:
            cfg = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_TIME,
                opt_start_time=datetime.datetime.fromtimestamp(start_time, tz=datetime.UTC),
            )
        async with self._ordered(subject, stream, config=cfg) as queue:
            while True:
                yield await queue.get()

    @contextlib.asynccontextmanager
    async def _ordered(
        self, subject: str, stream: str, **kwargs: Any
    ) -> AsyncIterator[asyncio.Queue[Msg]]:
        """An ordered push consumer feeding our own queue.

        Not nats-py's `Subscription.next_msg`: on Python 3.11 its inner `wait_for` task can
        outlive a cancellation of the reader, and the reader then never finishes (a brain
        stopping mid-call hung that way). A plain queue read cancels cleanly.
        """
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            queue.put_nowait(msg)

        sub = await self.js.subscribe(
            subject, stream=stream, ordered_consumer=True, cb=on_msg, **kwargs
        )
        try:
            yield queue
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def history(self, subject: str) -> list[Envelope]:
        """Everything stored so far for a subject (no follow)."""
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


OnCall = Callable[[schemas.Started, bool], Awaitable[None]]


class CallClaims:
    """Owns calls for one service instance through the service's claim consumer.

    `on_call(started, takeover)` runs for the whole call; its return releases the claim (ack).
    A call already ended when claimed (a stale redelivery) is acked at once.
    """

    def __init__(
        self, bus: Bus, claim: streams.ClaimConsumer, on_call: OnCall, *, max_calls: int = 1000
    ) -> None:
        self.bus = bus
        self.claim = claim
        self.on_call = on_call
        self.max_calls = max_calls
        self.held: dict[str, tuple[Msg, asyncio.Task[None]]] = {}

    async def run(self) -> None:
        await streams.ensure_claims(self.bus.js, self.claim)
        psub = await self.bus.js.pull_subscribe_bind(self.claim.durable, stream=streams.CALLS)
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"{self.claim.durable}-heartbeat")
        try:
            while True:
                room = self.max_calls - len(self.held)
                if room <= 0:
                    await asyncio.sleep(0.1)
                    continue
                try:
                    msgs = await psub.fetch(min(room, 16), timeout=1.0)
                except TimeoutError:  # nats' own and the bare asyncio one both mean "nothing yet"
                    continue
                except nats.errors.ConnectionClosedError:
                    return
                for msg in msgs:
                    await self._take(msg)
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
            heartbeat.cancel()
            for msg, task in list(self.held.values()):
                task.cancel()
                # A clean stop hands the call to another instance now, not after ack_wait.
                with contextlib.suppress(Exception):
                    await msg.nak()
            await asyncio.gather(
                heartbeat, *(t for _, t in self.held.values()), return_exceptions=True
            )

    async def _take(self, msg: Msg) -> None:
        env = self.bus.decode(msg)
        if env is None or not isinstance(env.event, schemas.Started):
            await msg.term()  # permanent: never redeliver garbage
            return
        started: schemas.Started = env.event
        if started.call_id in self.held:
            return  # our own redelivery while we still hold it
        takeover = msg.metadata.num_delivered > 1
        if takeover and await self.bus.call_ended(started.call_id):
            await msg.ack()
            return
        task = asyncio.create_task(
            self._run_call(started, takeover), name=f"call-{started.call_id}"
        )
        self.held[started.call_id] = (msg, task)

    async def _run_call(self, started: schemas.Started, takeover: bool) -> None:
        try:
            await self.on_call(started, takeover)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("[%s] %s call handler failed", started.call_id, self.bus.service)
        msg, _ = self.held.pop(started.call_id)
        with contextlib.suppress(Exception):
            await msg.ack()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.claim.ack_wait_s / 3)
            for msg, _ in list(self.held.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()
