"""The live page's feed: the CALLS stream and the edges' liveness, folded into the board,
fanned out to the browsers connected to `/api/live` as server-sent events.

One stream tail for the whole console (not one per browser), from the newest message on:
PostgreSQL is never read here. A browser gets the whole board when it connects, then every
`interval_s` the calls that changed and the ones that left. A browser that does not keep up
(its queue of updates is full) is disconnected, and its EventSource reconnects to a fresh
snapshot: a slow laptop never makes the console hold messages for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from nats.aio.msg import Msg

from console import metrics
from console.auth import Viewer, for_viewer
from console.board import LiveBoard
from events import codec, streams, subjects
from events.bus import Bus
from events.tail import NEW, StreamTail

log = logging.getLogger("console.live")

# The control plane minus `control` (nothing the live page shows).
SUBJECTS: Final = [
    "call.*.event.>",
    "call.*.transcript",
    "call.*.decision",
    "call.*.say",
    "call.*.playback",
]
QUEUE_SIZE: Final = 64  # updates waiting for one browser; more: it is disconnected
HISTORY_READS: Final = 4  # calls joined mid-way whose history is read at once


@dataclass(eq=False)
class Client:
    viewer: Viewer
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def send(self, line: str | None) -> bool:
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            return False
        return True


def sse(event: str, data: Any) -> str:
    """One server-sent event."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {body}\n\n"


class LiveFeed:
    def __init__(self, bus: Bus, *, interval_s: float = 0.5, max_clients: int = 50) -> None:
        self.bus = bus
        self.board = LiveBoard()
        self.interval_s = interval_s
        self.max_clients = max_clients
        self.clients: set[Client] = set()
        self._tail: StreamTail | None = None
        self._alive_sub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._history = asyncio.Semaphore(HISTORY_READS)
        self._reading: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._tail = await self.bus.tail(streams.CALLS, SUBJECTS, start=NEW, name="console").start()
        self._alive_sub = await self.bus.nc.subscribe(subjects.EDGE_ALIVE, cb=self._on_alive)
        self._tasks = [
            asyncio.create_task(self._read(self._tail), name="console-live-read"),
            asyncio.create_task(self._tick(), name="console-live-tick"),
        ]

    async def stop(self) -> None:
        for client in list(self.clients):
            client.send(None)
        for task in [*self._tasks, *self._reading]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._reading, return_exceptions=True)
        if self._alive_sub is not None:
            with contextlib.suppress(Exception):
                await self._alive_sub.unsubscribe()
        if self._tail is not None:
            await self._tail.close()

    # --- in: NATS -------------------------------------------------------------------------------

    async def _read(self, tail: StreamTail) -> None:
        while True:
            msg = await tail.get()
            env = self.bus.decode(msg)
            if env is not None:
                self.board.apply(env.stream_seq or _seq(msg), env.event, time.monotonic())

    async def _on_alive(self, msg: Msg) -> None:
        try:
            alive = codec.decode_edge_alive(msg.data)
        except codec.BadMessage as e:
            log.warning("skipped an undecodable edge liveness message: %s", e)
            return
        self.board.edge_alive(alive, time.monotonic())

    async def _load_history(self, call_id: str) -> None:
        async with self._history:
            try:
                envs = await asyncio.wait_for(self.bus.history(subjects.all_of(call_id)), 10.0)
            except Exception as e:
                log.warning("[%s] history not read: %r", call_id, e)
                return
        self.board.history_loaded(
            call_id, [(e.stream_seq, e.event) for e in envs], time.monotonic()
        )

    # --- out: browsers --------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            for call_id in self.board.take_need_history():
                task = asyncio.create_task(self._load_history(call_id), name=f"history-{call_id}")
                self._reading.add(task)
                task.add_done_callback(self._reading.discard)
            self.board.prune(now)
            metrics.LIVE_CALLS.set(len(self.board.calls))
            changed, gone = self.board.take_changes()
            if changed or gone:
                self._broadcast({"calls": changed, "gone": gone, "now": time.time()})

    def _broadcast(self, update: dict[str, Any]) -> None:
        lines: dict[bool, str] = {}
        for client in list(self.clients):
            sees = client.viewer.sees_numbers
            if sees not in lines:
                lines[sees] = sse("update", for_viewer(update, client.viewer))
            if not client.send(lines[sees]):
                log.info("a live page did not keep up: disconnected (it reconnects)")
                metrics.DROPPED_CLIENTS.inc()
                self.remove(client)
                with contextlib.suppress(asyncio.QueueEmpty):
                    client.queue.get_nowait()  # room for the end-of-stream marker
                client.send(None)

    def add(self, viewer: Viewer) -> Client | None:
        """A browser's live stream, starting with the whole board; None: too many already."""
        if len(self.clients) >= self.max_clients:
            return None
        client = Client(viewer)
        snapshot = {"calls": self.board.snapshot(), "now": time.time()}
        client.send(sse("snapshot", for_viewer(snapshot, viewer)))
        self.clients.add(client)
        metrics.LIVE_CLIENTS.set(len(self.clients))
        return client

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        metrics.LIVE_CLIENTS.set(len(self.clients))


def _seq(msg: Msg) -> int:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return 0
