"""The calls in progress, as the live page shows them, folded from CALLS events. Pure: no I/O.

Each call keeps, of every kind of thing the page shows (state, last transcript, last
decision, what the bot said last), the one with the highest stream sequence: events may come
in any order (a call's history is read after the live tail has already delivered some of its
newer events), and the same events give the same board.

A call is in progress from its first event to its `ended`; it stays on the board
`LINGER_S` after that (marked ended) so that someone watching sees how it ended. A call the
console joined late (started before the console, or missed during a NATS outage) is named by
its edge's `voicebot.edge.alive` or by any of its events: the shell then reads its history.
A call no edge names any more and that said nothing for `STALE_S` is gone (its `ended` was
lost with its edge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from console.auth import mask_number
from events import schemas
from events.phrases import PHRASES

LINGER_S: Final = 15.0
STALE_S: Final = 10.0


@dataclass
class _Latest:
    """A value with the stream sequence it came from: a higher one replaces it."""

    seq: int = -1
    value: Any = None

    def offer(self, seq: int, value: Any) -> bool:
        if seq <= self.seq:
            return False
        self.seq, self.value = seq, value
        return True


@dataclass
class LiveCall:
    call_id: str
    started_ts: float | None = None
    caller: str | None = None
    edge: str = ""
    state: _Latest = field(default_factory=_Latest)
    transcript: _Latest = field(default_factory=_Latest)
    decision: _Latest = field(default_factory=_Latest)
    bot: _Latest = field(default_factory=_Latest)
    outcome: _Latest = field(default_factory=_Latest)  # the dialog's, from decision snapshots
    ended_ts: float | None = None
    end_outcome: str | None = None
    last_event_ts: float = 0.0
    last_named_ts: float = 0.0  # when an edge last said it holds the call
    history_loaded: bool = False
    holds: int = 0
    bargeins: int = 0

    def view(self) -> dict[str, Any]:
        """What the live page shows of the call (the caller's number masked for everyone)."""
        return {
            "call_id": self.call_id,
            "started_ts": self.started_ts,
            "caller": mask_number(self.caller),
            "state": self.state.value or "INIT",
            "last_transcript": self.transcript.value,
            "last_decision": self.decision.value,
            "last_bot": self.bot.value,
            "outcome": self.outcome.value,
            "ended_ts": self.ended_ts,
            "end_outcome": self.end_outcome,
            "holds": self.holds,
            "bargeins": self.bargeins,
        }


class LiveBoard:
    def __init__(self) -> None:
        self.calls: dict[str, LiveCall] = {}
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        self._finished: set[str] = set()  # ended and dropped: late events do not bring it back
        self._need_history: set[str] = set()

    # --- folding ------------------------------------------------------------------------------

    def apply(self, seq: int, event: Any, now: float) -> None:
        """Fold one CALLS event (stream sequence `seq`) into the board."""
        if isinstance(event, schemas.Interim):
            return  # the bulk of the stream; the page shows finals
        cid = event.call_id
        if cid in self._finished:
            return
        call = self.calls.get(cid)
        if call is None:
            call = self.calls[cid] = LiveCall(cid, last_named_ts=now)
            if not isinstance(event, schemas.Started):
                self._need_history.add(cid)  # joined mid-call: its start is in the history
            else:
                call.history_loaded = True
        call.last_event_ts = max(call.last_event_ts, now)
        if self._fold(call, seq, event):
            self._dirty.add(cid)

    def _fold(self, call: LiveCall, seq: int, event: Any) -> bool:
        match event:
            case schemas.Started(ts=ts, caller=caller, edge=edge):
                call.started_ts, call.caller, call.edge = ts, caller, edge
                return True
            case schemas.Final(text=text, ts=ts) if text.strip():
                return call.transcript.offer(seq, {"text": text, "ts": ts})
            case schemas.Decision() as d:
                changed = call.state.offer(seq, d.state_to)
                if d.snapshot.get("outcome"):
                    changed |= call.outcome.offer(seq, d.snapshot["outcome"])
                if d.text is None and d.state_from == d.state_to and d.intent is None:
                    return changed  # bookkeeping (timers, playback progress): not worth showing
                return call.decision.offer(seq, _decision(d)) or changed
            case schemas.Say() as s:
                text = PHRASES.get(s.phrase, s.phrase) if s.phrase is not None else s.text or ""
                return call.bot.offer(seq, {"text": text, "ts": s.ts})
            case schemas.PlaybackStarted(origin="edge", utterance_id=u, ts=ts):
                call.holds += 1
                key = u.removeprefix("edge-").rsplit("-", 1)[0]
                return call.bot.offer(seq, {"text": PHRASES.get(key, key), "ts": ts, "edge": True})
            case schemas.BargeIn():
                call.bargeins += 1
                return True
            case schemas.Ended(ts=ts, outcome=outcome):
                call.ended_ts, call.end_outcome = ts, outcome
                return True
        return False

    def history_loaded(self, call_id: str, events: list[tuple[int, Any]], now: float) -> None:
        """The call's stored history, read after the board met it mid-call."""
        call = self.calls.get(call_id)
        if call is None:
            return
        for seq, event in events:
            self.apply(seq, event, now)
        call.history_loaded = True
        self._dirty.add(call_id)

    def edge_alive(self, alive: schemas.EdgeAlive, now: float) -> None:
        """An edge names the calls it holds: unknown ones are in progress (read their history)."""
        for cid in alive.calls:
            if cid in self._finished:
                continue
            call = self.calls.get(cid)
            if call is None:
                call = self.calls[cid] = LiveCall(cid, last_event_ts=now)
                self._need_history.add(cid)
            call.last_named_ts = now

    # --- what the shell does next -------------------------------------------------------------

    def take_need_history(self) -> list[str]:
        wanted, self._need_history = sorted(self._need_history), set()
        return wanted

    def prune(self, now: float) -> None:
        """Drop calls ended more than LINGER_S ago, and calls gone silent with their edge."""
        for cid, call in list(self.calls.items()):
            ended = call.ended_ts is not None and now - call.last_event_ts > LINGER_S
            lost = (
                call.ended_ts is None
                and now - call.last_named_ts > STALE_S
                and now - call.last_event_ts > STALE_S
            )
            if ended or lost:
                del self.calls[cid]
                self._finished.add(cid)
                self._dirty.discard(cid)
                self._gone.add(cid)
        if len(self._finished) > 10_000:  # a long-running console: forget the oldest half
            self._finished = set(list(self._finished)[5_000:])

    def take_changes(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The calls changed and the calls removed since the last call."""
        changed = [self.calls[c].view() for c in sorted(self._dirty) if c in self.calls]
        gone = sorted(self._gone)
        self._dirty, self._gone = set(), set()
        return changed, gone

    def snapshot(self) -> list[dict[str, Any]]:
        return [c.view() for c in sorted(self.calls.values(), key=_started)]


def _started(call: LiveCall) -> float:
    return call.started_ts or 0.0


def _decision(d: schemas.Decision) -> dict[str, Any]:
    lat = d.latency
    return {
        "ts": d.ts,
        "turn": d.turn,
        "trigger": d.trigger,
        "state_from": d.state_from,
        "state_to": d.state_to,
        "intent": d.intent,
        "slots": dict(d.slots),
        "latency": None
        if lat is None
        else {
            "transcript_ms": lat.transcript_ms,
            "nlu_ms": lat.nlu_ms,
            "say_ms": lat.say_ms,
        },
    }
