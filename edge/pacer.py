"""The shared 20 ms ticker that writes every call's next frame.

Deadlines are absolute (start + n * period on the loop's clock), so lateness never accumulates
into drift. When the loop was late by more than a period the missed ticks are skipped, not
replayed: a burst of frames is worse than a gap, since Asterisk does not re-time what we send.
The arithmetic is the pure function `next_deadline`; `Ticker` is the thin async shell.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("edge.pacer")

PERIOD_S = 0.020


def next_deadline(deadline: float, now: float, period: float = PERIOD_S) -> tuple[float, int]:
    """The deadline after the tick due at `deadline` that ran at `now`, and the ticks skipped.

    On time (or late by less than a period): the next grid point. Later than that: the first
    grid point still in the future, counting the ones jumped over.
    """
    following = deadline + period
    if now < following:
        return following, 0
    missed = int((now - deadline) // period)
    candidate = deadline + (missed + 1) * period
    if candidate <= now:  # float rounding at an exact grid point
        missed += 1
        candidate += period
    return candidate, missed


class TickClient(Protocol):
    def tick(self) -> bool:
        """Write this tick's frame; False when nothing was written (the call ended)."""


class Ticker:
    """Calls `tick()` on every registered client once per period, from one timer.

    `on_tick(lateness_s, frames_written, skipped)` is called after each tick for metrics. A client
    that raises is removed and logged; the others keep their frames.
    """

    def __init__(
        self,
        period: float = PERIOD_S,
        on_tick: Callable[[float, int, int], None] | None = None,
    ) -> None:
        self.period = period
        self._on_tick = on_tick
        self._clients: dict[int, TickClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self.ticks = 0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def add(self, client: TickClient) -> None:
        self._clients[id(client)] = client

    def remove(self, client: TickClient) -> None:
        self._clients.pop(id(client), None)

    def __len__(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + self.period
        self._handle = self._loop.call_at(self._deadline, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        lateness = now - self._deadline
        written = 0
        for client in list(self._clients.values()):
            try:
                written += client.tick()
            except Exception:
                log.exception("tick failed for %r; removing it from the ticker", client)
                self.remove(client)
        self.ticks += 1
        self._deadline, skipped = next_deadline(self._deadline, self._loop.time(), self.period)
        self._handle = self._loop.call_at(self._deadline, self._fire)
        if self._on_tick is not None:
            self._on_tick(lateness, written, skipped)
