"""Which calls still have an edge: from the edges' `voicebot.edge.alive` beats. Pure.

An edge names the calls it holds a connection for every second. A worker holding a call lets it
go when the call's edge stopped naming it (its `ended` was lost on the way) or went silent (it
died with the call). Judged only after the worker itself has been connected to NATS for a
whole bound: during a NATS restart nobody hears anybody, and that is not a reason to drop calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from events.schemas import EdgeAlive

BOUND_S: Final = 5.0
MISSES: Final = 2  # beats in a row that leave a call out, after this worker took it
FORGET_BEATS: Final = 120  # a call not named for this many beats is no longer tracked


@dataclass(slots=True)
class _Edge:
    last_seen: float  # monotonic
    beats: int = 0
    named: dict[str, int] = field(default_factory=dict)  # call -> last beat that named it


@dataclass(frozen=True, slots=True)
class _Held:
    edge: str
    base: int  # the edge's beat count when this worker took the call
    since: float  # monotonic


class EdgeWatch:
    def __init__(self, *, bound_s: float = BOUND_S) -> None:
        self.bound_s = bound_s
        self._edges: dict[str, _Edge] = {}
        self._held: dict[str, _Held] = {}
        self._connected_since: float | None = None

    # --- what the worker hears ------------------------------------------------------------

    def connected(self, now: float) -> None:
        self._connected_since = now

    def disconnected(self) -> None:
        self._connected_since = None

    def beat(self, alive: EdgeAlive, now: float) -> None:
        edge = self._edges.get(alive.edge)
        if edge is None:
            edge = self._edges[alive.edge] = _Edge(last_seen=now)
        edge.last_seen = now
        edge.beats += 1
        for call_id in alive.calls:
            edge.named[call_id] = edge.beats
        if len(edge.named) > 2 * len(alive.calls) + 1000:
            oldest = edge.beats - FORGET_BEATS
            edge.named = {c: n for c, n in edge.named.items() if n >= oldest}

    # --- the calls it holds ---------------------------------------------------------------

    def hold(self, call_id: str, edge_id: str, now: float) -> None:
        edge = self._edges.get(edge_id)
        self._held[call_id] = _Held(edge_id, edge.beats if edge else 0, now)

    def release(self, call_id: str) -> None:
        self._held.pop(call_id, None)

    def orphans(self, now: float) -> dict[str, str]:
        """Held calls whose edge is gone, with the reason."""
        if self._connected_since is None or now - self._connected_since < self.bound_s:
            return {}
        out = {}
        for call_id, held in self._held.items():
            reason = self._judge(call_id, held, now)
            if reason is not None:
                out[call_id] = reason
        return out

    def _judge(self, call_id: str, held: _Held, now: float) -> str | None:
        if not held.edge:
            return None  # started by an edge that does not name its calls
        edge = self._edges.get(held.edge)
        if edge is None:
            assert self._connected_since is not None
            if now - max(held.since, self._connected_since) > self.bound_s:
                return f"edge {held.edge} not heard for {self.bound_s:.0f} s"
            return None
        if now - edge.last_seen > self.bound_s:
            return f"edge {held.edge} silent for {now - edge.last_seen:.1f} s"
        if edge.beats - max(edge.named.get(call_id, 0), held.base) >= MISSES:
            return f"edge {held.edge} no longer holds the call"
        return None
