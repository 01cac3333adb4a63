"""One call's control-plane events, published in order, each until JetStream acknowledged it.

For hot paths that must not await (the edge's socket handler and ticker): `put` queues and
returns. A task per outbox publishes one event at a time, in order, retrying through NATS
outages (every event carries a `Nats-Msg-Id`, so a retry whose first try did land is stored
once). Calls never wait for each other: each has its own outbox. Memory is bounded per call:
past `max_items` the oldest queued events are dropped and counted (only a NATS outage of
minutes fills it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Final

import msgspec
from prometheus_client import Counter

if TYPE_CHECKING:
    from events.bus import Bus

log = logging.getLogger("events.outbox")

DROPPED: Final = Counter(
    "voicebot_outbox_dropped_total",
    "Events dropped because a call's outbox was full (NATS unreachable for long)",
    ["service"],
)

MAX_ITEMS: Final = 2000


class Outbox:
    def __init__(self, bus: Bus, name: str, *, max_items: int = MAX_ITEMS) -> None:
        self.bus = bus
        self.name = name
        self.max_items = max_items
        self._items: deque[tuple[str, msgspec.Struct, str]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def put(self, subject: str, event: msgspec.Struct, msg_id: str) -> None:
        if self._closing:
            log.warning("%s: event on %s after close, dropped", self.name, subject)
            DROPPED.labels(self.bus.service).inc()
            return
        if len(self._items) >= self.max_items:
            self._items.popleft()
            DROPPED.labels(self.bus.service).inc()
            log.error("%s: outbox full (%d): oldest event dropped", self.name, self.max_items)
        self._items.append((subject, event, msg_id))
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"outbox-{self.name}")

    @property
    def queued(self) -> int:
        return len(self._items)

    async def _drain(self) -> None:
        while True:
            while self._items:
                subject, event, msg_id = self._items[0]
                try:
                    await self.bus.publish(subject, event, msg_id=msg_id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Not a transient NATS error (those are retried inside publish): never
                    # going to succeed, so it must not block the events behind it.
                    log.exception("%s: event on %s could not be published", self.name, subject)
                self._items.popleft()
                self.published += 1
            self._idle.set()
            if self._closing:
                return
            self._wake.clear()
            await self._wake.wait()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued so far is acknowledged; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = 10.0) -> None:
        """Publish what is queued (within `timeout_s`), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._task)
        except TimeoutError:
            log.error(
                "%s: %d events not acknowledged after %.0f s: dropped",
                self.name,
                len(self._items),
                timeout_s,
            )
            DROPPED.labels(self.bus.service).inc(len(self._items))
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
