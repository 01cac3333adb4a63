"""What the HTTP API and the AudioSocket server share: callers registered by the dialplan
before `AudioSocket()`, and call outcomes kept for the dialplan's lookup after it returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

PENDING: Final = "pending"
CALLER_TTL_S: Final = 300.0  # a registration whose call never connects is forgotten
MAX_ENTRIES: Final = 100_000  # bounds memory if someone with the token floods registrations


class CallRegistry:
    def __init__(
        self, *, outcome_ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.outcome_ttl_s = outcome_ttl_s
        self._clock = clock
        self._callers: dict[str, tuple[str, float]] = {}
        self._active: set[str] = set()
        self._outcomes: dict[str, tuple[str, float]] = {}  # finished call -> (outcome, expiry)

    def register_caller(self, call_id: str, caller: str) -> None:
        self._expire()
        if len(self._callers) >= MAX_ENTRIES:
            self._callers.pop(next(iter(self._callers)))
        self._callers[call_id] = (caller, self._clock() + CALLER_TTL_S)

    def caller(self, call_id: str) -> str | None:
        entry = self._callers.get(call_id)
        return entry[0] if entry is not None else None

    def call_started(self, call_id: str) -> None:
        self._active.add(call_id)

    def call_ended(self, call_id: str, outcome: str) -> None:
        self._expire()
        self._active.discard(call_id)
        self._callers.pop(call_id, None)
        self._outcomes.pop(call_id, None)  # re-insert at the end: the table is in expiry order
        self._outcomes[call_id] = (outcome, self._clock() + self.outcome_ttl_s)

    def outcome(self, call_id: str) -> str | None:
        """`pending`, `hangup`, `transfer:<target>`, or None for a call never seen."""
        if call_id in self._active:
            return PENDING
        self._expire()
        entry = self._outcomes.get(call_id)
        return entry[0] if entry is not None else None

    def _expire(self) -> None:
        now = self._clock()
        # dicts keep insertion order and TTLs are equal, so expired entries sit at the front
        for table in (self._callers, self._outcomes):
            while table:
                key = next(iter(table))
                if table[key][1] > now:
                    break
                del table[key]
