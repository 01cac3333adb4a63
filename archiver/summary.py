"""A call's `calls` row, computed from all of its stored CALLS events. Pure: no I/O.

Recomputing from the whole history (rather than updating counters message by message) makes
the row independent of delivery order and of re-delivery: whatever arrived twice or late, the
same events give the same row.

Timings use each event's own `ts` (the publisher's wall clock). A bot utterance is on the line
from its `playback.started` for as many 20 ms frames as its `finished`/`interrupted` report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from events import schemas
from events.audio import FRAME_MS

FRAME_S = FRAME_MS / 1000
NO_INPUT_PHRASES = frozenset({"no_input", "no_input_last"})


@dataclass(frozen=True, slots=True)
class Stored:
    """One CALLS message as the archiver keeps it: stream sequence, decoded event."""

    seq: int
    event: Any


@dataclass(frozen=True, slots=True)
class BotLine:
    """When a bot utterance was on the line, in seconds from the start of the call."""

    start_s: float
    end_s: float
    interrupted: bool


@dataclass
class CallSummary:
    call_id: str
    started_ts: float
    caller: str | None = None
    ended_ts: float | None = None
    duration_s: float | None = None
    end_reason: str | None = None
    hung_up_by: str | None = None
    end_outcome: str | None = None
    transfer_target: str | None = None
    outcome: str | None = None  # the dialog's
    final_state: str | None = None
    customer_id: int | None = None
    phone: str | None = None
    category: str | None = None
    turns: int = 0
    dead_air_s: float = 0.0
    max_wait_s: float | None = None
    talk_overs: int = 0
    repeat_prompts: int = 0
    caller_repeats: int = 0
    no_input_prompts: int = 0
    hold_prompts: int = 0
    provider_errors: int = 0
    underruns: int = 0
    events: int = 0
    last_seq: int = 0
    # Per message, for the rows that carry them.
    first_frame_ms: dict[int, float] = field(default_factory=dict)  # decision seq -> ms
    bot_lines: dict[int, BotLine] = field(default_factory=dict)  # say seq -> times


def summarize(call_id: str, history: list[Stored]) -> CallSummary:
    """The call's figures from its events (in any order, repeats counted once)."""
    history = sorted({s.seq: s for s in history}.values(), key=lambda s: s.seq)
    started = next((s.event for s in history if isinstance(s.event, schemas.Started)), None)
    t0 = started.ts if started is not None else min((s.event.ts for s in history), default=0.0)
    out = CallSummary(call_id, t0, caller=started.caller if started is not None else None)
    out.events = len(history)
    out.last_seq = history[-1].seq if history else 0
    _ending(out, history)
    _dialog(out, history)
    _line(out, history)
    return out


def _ending(out: CallSummary, history: list[Stored]) -> None:
    for s in history:
        match s.event:
            case schemas.Ended() as e:
                out.ended_ts, out.duration_s = e.ts, e.duration_s
                out.end_reason, out.end_outcome = e.reason, e.outcome
                out.underruns = e.underruns
                if e.outcome.startswith("transfer"):
                    out.transfer_target = e.outcome.partition(":")[2] or "technicians"
            case schemas.Hangup(by=by):
                out.hung_up_by = by
            case schemas.Error():
                out.provider_errors += 1


def live_decisions(history: list[Stored]) -> list[tuple[int, schemas.Decision]]:
    """Decisions of the brain that owned the call: one from an owner that had already been
    replaced (its epoch below the newest brain claim before it) did not happen."""
    newest = 0
    live = []
    for s in history:
        match s.event:
            case schemas.Claimed(service="brain", epoch=epoch):
                newest = max(newest, epoch)
            case schemas.Decision(epoch=epoch) as d if not (0 < epoch < newest):
                live.append((s.seq, d))
    return live


def _dialog(out: CallSummary, history: list[Stored]) -> None:
    for _, d in live_decisions(history):
        snap = d.snapshot
        out.final_state = d.state_to
        out.outcome = snap.get("outcome") or out.outcome
        out.customer_id = snap.get("customer_id") or out.customer_id
        out.phone = snap.get("phone") or out.phone
        out.category = snap.get("category") or out.category
        if d.text is not None:
            out.turns += 1
        if d.intent == "repeat":
            out.caller_repeats += 1
    for s in history:
        if isinstance(s.event, schemas.Say):
            phrase = s.event.phrase
            out.repeat_prompts += phrase == "repeat"
            out.no_input_prompts += phrase in NO_INPUT_PHRASES
            out.hold_prompts += phrase == "hold"
        elif isinstance(s.event, schemas.PlaybackStarted) and s.event.origin == "edge":
            out.hold_prompts += 1  # a cached phrase the edge played itself: the pipeline was slow


def _line(out: CallSummary, history: list[Stored]) -> None:
    """What was on the line when: bot utterances, talk-overs, the caller's waits."""
    started: dict[str, float] = {}
    ended: dict[str, tuple[int, bool]] = {}  # utterance -> (frames, interrupted)
    spoken_over: set[str] = set()
    for s in history:
        match s.event:
            case schemas.PlaybackStarted(utterance_id=u, ts=ts):
                started.setdefault(u, ts)
            case schemas.PlaybackFinished(utterance_id=u, frames=n):
                ended[u] = (n, False)
            case schemas.PlaybackInterrupted(utterance_id=u, frames=n, reason=why):
                ended[u] = (n, True)
                if not why.startswith("hangup"):
                    spoken_over.add(u)
            case schemas.BargeIn(utterance_id=u):
                spoken_over.add(u)
    out.talk_overs = len(spoken_over)
    for s in history:
        if isinstance(s.event, schemas.Say) and s.event.utterance_id in started:
            u = s.event.utterance_id
            start = started[u] - out.started_ts
            frames, cut = ended.get(u, (0, False))
            out.bot_lines[s.seq] = BotLine(round(start, 3), round(start + frames * FRAME_S, 3), cut)
    _waits(out, history, started)


def _waits(out: CallSummary, history: list[Stored], started: dict[str, float]) -> None:
    """Caller's end of speech -> first bot frame after it, for each decision on speech.

    A decision's says are published just before it (after the previous decision), the hold
    phrase among them; `latency.say_ms` is measured to its last say, which places the end of
    speech on the wall clock."""
    says: list[schemas.Say] = []
    waits: list[float] = []
    live = {seq for seq, _ in live_decisions(history)}
    for s in history:
        if isinstance(s.event, schemas.Say):
            says.append(s.event)
            continue
        if not isinstance(s.event, schemas.Decision):
            continue
        window, says = says, []
        latency = s.event.latency
        if s.seq not in live or latency is None or latency.say_ms is None or not window:
            continue
        end_of_speech = window[-1].ts - latency.say_ms / 1000
        played = [started[x.utterance_id] for x in window if x.utterance_id in started]
        if not played:
            continue
        wait_ms = max(0.0, (min(played) - end_of_speech) * 1000)
        out.first_frame_ms[s.seq] = round(wait_ms, 1)
        waits.append(wait_ms / 1000)
    out.dead_air_s = round(sum(waits), 3)
    out.max_wait_s = round(max(waits), 3) if waits else None
