"""Following a stream in order, across reconnects, server restarts and cluster fail-overs.

`StreamTail` is our own ordered push consumer: an ephemeral consumer (no state worth keeping on
the server) that delivers into a core subscription, with the stream sequence of the last message
handed over kept on our side. Whenever delivery may have been broken it re-creates the consumer
from the next sequence, so nothing is skipped and nothing is repeated:

- at once when the connection comes back (a restarted nats-server has forgotten its ephemeral
  consumers, and waiting for missed heartbeats, as nats-py's own ordered consumer does, left a
  caller's line untranscribed for 15 s);
- when the consumer sequence jumps (a message was lost on the way, e.g. a slow client);
- when neither a message nor a heartbeat arrived for a few heartbeat periods.

Creation is retried with a short back-off until it succeeds: a nats-server that just restarted
answers JetStream requests a moment after it accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from nats.aio.msg import Msg
from nats.js import api

if TYPE_CHECKING:
    from events.bus import Bus

log = logging.getLogger("events.tail")

HEARTBEAT_S: Final = 1.0
SILENT_HEARTBEATS: Final = 3  # this many periods without a message or heartbeat: re-create
RETRY_S: Final = (0.05, 0.1, 0.2, 0.5, 1.0)
CONSUMER_TIMEOUT_S: Final = 2.0
ORPHAN_AFTER_S: Final = 10.0  # the server deletes a consumer whose subscriber went away


@dataclass(frozen=True, slots=True)
class Start:
    """Where a tail starts: `all`, `new`, a stream `seq`, or a wall-clock `time`."""

    policy: str = "all"
    seq: int = 0
    time: float = 0.0

    @classmethod
    def at_seq(cls, seq: int) -> Start:
        return cls("seq", seq=seq)

    @classmethod
    def at_time(cls, ts: float) -> Start:
        return cls("time", time=ts)


ALL: Final = Start("all")
NEW: Final = Start("new")


class StreamTail:
    """Messages of `subjects` in `stream`, in order, from `start`, then live.

    Read with `await tail.get()` or `async for msg in tail`. `pending` is what the stream still
    held for us when the last message was sent (0: caught up with the history).
    """

    def __init__(
        self,
        bus: Bus,
        stream: str,
        subjects: Sequence[str],
        *,
        start: Start = ALL,
        heartbeat_s: float = HEARTBEAT_S,
        name: str = "",
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.subjects = list(subjects)
        self.start_at = start
        self.heartbeat_s = heartbeat_s
        self.name = name or ",".join(subjects)
        self.last_seq: int | None = None  # stream sequence of the last message queued
        self.pending_at_start = 0  # messages stored for us when the tail was first created
        self.resets = 0
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Any = None
        self._dseq = 0  # consumer sequence of the last message of the current consumer
        self._seen = 0.0  # monotonic time of the last message or heartbeat
        self._dirty = asyncio.Event()  # delivery may be broken: re-create
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> StreamTail:
        """Create the consumer (retrying while the server is not ready), then keep it alive."""
        await self._recreate()
        self._task = asyncio.create_task(self._guard(), name=f"tail-{self.name}")
        self.bus.on_reconnect(self._on_reconnect)
        return self

    async def close(self) -> None:
        self._closed = True
        self.bus.off_reconnect(self._on_reconnect)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_subscription()

    async def __aenter__(self) -> StreamTail:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def __aiter__(self) -> StreamTail:
        return self

    async def __anext__(self) -> Msg:
        return await self.get()

    async def get(self) -> Msg:
        return await self._queue.get()

    def get_nowait(self) -> Msg:
        return self._queue.get_nowait()

    @property
    def backlog(self) -> int:
        """Messages received and not yet read."""
        return self._queue.qsize()

    # --- keeping delivery whole ---------------------------------------------------------------

    def _on_reconnect(self) -> None:
        self._dirty.set()

    async def _guard(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.heartbeat_s):
                    await self._dirty.wait()
            except TimeoutError:
                silent = time.monotonic() - self._seen
                if silent < SILENT_HEARTBEATS * self.heartbeat_s or not self.bus.nc.is_connected:
                    continue
                log.info("tail %s: silent for %.1f s, re-creating", self.name, silent)
            await self._recreate()

    async def _recreate(self) -> None:
        attempt = 0
        while not self._closed:
            self._dirty.clear()
            try:
                await self._create()
                return
            except Exception as e:
                delay = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                attempt += 1
                if attempt in (1, 10) or attempt % 50 == 0:
                    log.warning("tail %s: consumer not created (%r), retrying", self.name, e)
                await asyncio.sleep(delay)

    async def _create(self) -> None:
        await self._drop_subscription()
        nc = self.bus.nc
        inbox = nc.new_inbox()
        self._dseq = 0
        self._sub = await nc.subscribe(inbox, cb=self._on_msg)
        config = api.ConsumerConfig(
            deliver_subject=inbox,
            ack_policy=api.AckPolicy.NONE,
            max_deliver=1,
            idle_heartbeat=self.heartbeat_s,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=ORPHAN_AFTER_S,
            **self._position(),
        )
        if len(self.subjects) == 1:
            config.filter_subject = self.subjects[0]
        else:
            config.filter_subjects = self.subjects
        info = await self.bus.js._jsm.add_consumer(
            self.stream, config=config, timeout=CONSUMER_TIMEOUT_S
        )
        if self.last_seq is None:
            # Where the consumer starts, so that a re-creation before the first message resumes
            # there (not at "new" again, which would skip what was published in between).
            self.last_seq = max(0, info.delivered.stream_seq if info.delivered else 0)
            self.pending_at_start = info.num_pending or 0
        if self.resets or self._seen:
            log.debug("tail %s: consumer re-created after %s", self.name, self.last_seq)
        self.resets += 1
        self._seen = time.monotonic()
        self._ready.set()

    def _position(self) -> dict[str, Any]:
        if self.last_seq is not None:
            return {
                "deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": self.last_seq + 1,
            }
        match self.start_at.policy:
            case "new":
                return {"deliver_policy": api.DeliverPolicy.NEW}
            case "seq":
                return {
                    "deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE,
                    "opt_start_seq": max(1, self.start_at.seq),
                }
            case "time":
                when = datetime.datetime.fromtimestamp(self.start_at.time, tz=datetime.UTC)
                return {"deliver_policy": api.DeliverPolicy.BY_START_TIME, "opt_start_time": when}
        return {"deliver_policy": api.DeliverPolicy.ALL}

    async def _drop_subscription(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        if self._sub is None or msg.sid != self._sub._id:
            return  # from a consumer we already replaced
        self._seen = time.monotonic()
        if not msg.data and msg.headers and msg.headers.get("Status") == "100":
            # Idle heartbeat: it says which consumer sequence was sent last.
            last = msg.headers.get("Nats-Last-Consumer")
            if last is not None and int(last) != self._dseq:
                self._dirty.set()
            return
        try:
            meta = msg.metadata
        except Exception:
            return  # not a stream message
        if meta.sequence.consumer != self._dseq + 1:
            self._dirty.set()  # something was lost on the way: start again after the last one
            return
        self._dseq = meta.sequence.consumer
        self.last_seq = meta.sequence.stream
        self._queue.put_nowait(msg)
