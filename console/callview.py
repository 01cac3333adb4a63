"""One call as its page shows it, from its CALLS events. Pure: no I/O.

Everything is on the call's clock: seconds from `event.started`, as the archive's MP3 is
(archiver/timeline.py), so the page lays text, states and marks over the audio's waveforms.
The figures (dead air, talk-overs, repeat prompts, first bot frame of each turn) come from the
archiver's own summary of the same events: the page and the `calls` row cannot disagree.

- Caller lines: final transcripts, at their call-audio times (the call's clock while the
  phone sends audio, which it does from the start of the call).
- Bot lines: each utterance where the edge played it (`playback.started`, as many 20 ms
  frames as its end reports); the edge's own phrases (hold, unavailable) flagged `edge`.
- Decisions: the dialog's steps that a person would notice (a state change, the caller's
  words, an intent), with the latency breakdown of each turn: end of speech -> transcript
  -> decision -> say -> the reply's first frame on the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from archiver.summary import CallSummary, Stored, live_decisions, summarize
from events import schemas
from events.audio import FRAME_MS
from events.phrases import PHRASES

FRAME_S: Final = FRAME_MS / 1000
FIGURES: Final = (
    "turns",
    "dead_air_s",
    "max_wait_s",
    "talk_overs",
    "repeat_prompts",
    "caller_repeats",
    "no_input_prompts",
    "hold_prompts",
    "provider_errors",
    "underruns",
)


@dataclass(frozen=True, slots=True)
class Stop:
    """Where the call stands: ended (with its end), or still in progress."""

    live: bool
    duration_s: float


def build(call_id: str, history: list[Stored], now: float) -> dict[str, Any]:
    """The page's model of the call (JSON-able). `now` places the end of a call in progress."""
    s = summarize(call_id, history)
    events = [x for x in sorted({h.seq: h for h in history}.values(), key=lambda h: h.seq)]
    t0 = s.started_ts
    stop = _stop(s, events, now)
    return {
        "call_id": call_id,
        "live": stop.live,
        "started_ts": t0,
        "duration_s": round(stop.duration_s, 3),
        "caller": s.caller,
        "phone": s.phone,
        "category": s.category,
        "outcome": s.outcome,
        "end_outcome": s.end_outcome,
        "end_reason": s.end_reason,
        "hung_up_by": s.hung_up_by,
        "transfer_target": s.transfer_target,
        "final_state": s.final_state,
        "ticket": _ticket(events),
        "figures": {name: getattr(s, name) for name in FIGURES},
        "lines": _caller_lines(events) + _bot_lines(s, events, t0),
        "decisions": _decisions(s, events, t0),
        "marks": _marks(events, t0),
        "events": len(events),
        "last_seq": s.last_seq,
    }


def _stop(s: CallSummary, events: list[Stored], now: float) -> Stop:
    if s.ended_ts is not None:
        return Stop(False, s.duration_s if s.duration_s is not None else s.ended_ts - s.started_ts)
    return Stop(True, max(0.0, now - s.started_ts))


def _ticket(events: list[Stored]) -> str | None:
    number = None
    for h in events:
        if isinstance(h.event, schemas.Ticket) and h.event.number:
            number = h.event.number
    return number


def _caller_lines(events: list[Stored]) -> list[dict[str, Any]]:
    out = []
    for h in events:
        match h.event:
            case schemas.Final(text=text) as f if text.strip():
                end = f.end if f.end > 0 else None
                start = f.start if f.start > 0 or end is not None else None
                out.append(
                    {
                        "who": "caller",
                        "seq": h.seq,
                        "start": _r(start),
                        "end": _r(end),
                        "text": text.strip(),
                        "confidence": _r(f.confidence),
                    }
                )
    return out


def _bot_lines(s: CallSummary, events: list[Stored], t0: float) -> list[dict[str, Any]]:
    out = []
    for h in events:
        if isinstance(h.event, schemas.Say) and h.seq in s.bot_lines:
            line = s.bot_lines[h.seq]
            out.append(
                {
                    "who": "bot",
                    "seq": h.seq,
                    "start": line.start_s,
                    "end": line.end_s,
                    "text": _said(h.event),
                    "utterance_id": h.event.utterance_id,
                    "interrupted": line.interrupted,
                }
            )
    out += _edge_lines(events, t0)
    return out


def _edge_lines(events: list[Stored], t0: float) -> list[dict[str, Any]]:
    """The phrases the edge played itself (hold, unavailable): no `say`, only playback."""
    started: dict[str, tuple[int, float]] = {}
    ended: dict[str, tuple[int, bool]] = {}
    for h in events:
        match h.event:
            case schemas.PlaybackStarted(origin="edge", utterance_id=u, ts=ts):
                started.setdefault(u, (h.seq, ts))
            case schemas.PlaybackFinished(origin="edge", utterance_id=u, frames=n):
                ended[u] = (n, False)
            case schemas.PlaybackInterrupted(origin="edge", utterance_id=u, frames=n):
                ended[u] = (n, True)
    out = []
    for u, (seq, ts) in started.items():
        frames, cut = ended.get(u, (0, False))
        key = u.removeprefix("edge-").rsplit("-", 1)[0]
        start = ts - t0
        out.append(
            {
                "who": "edge",
                "seq": seq,
                "start": _r(start),
                "end": _r(start + frames * FRAME_S),
                "text": PHRASES.get(key, key),
                "utterance_id": u,
                "interrupted": cut,
                "phrase": key,
            }
        )
    return out


def _decisions(s: CallSummary, events: list[Stored], t0: float) -> list[dict[str, Any]]:
    out = []
    for seq, d in live_decisions(events):
        if d.state_from == d.state_to and d.text is None and d.intent is None:
            continue  # bookkeeping: a timer armed, a playback reported
        lat = d.latency
        latency = None
        if lat is not None and (lat.transcript_ms is not None or lat.say_ms is not None):
            latency = {
                "end_of_speech_s": _r(lat.end_of_speech_s),
                "transcript_ms": _r(lat.transcript_ms),
                "nlu_ms": _r(lat.nlu_ms),
                "say_ms": _r(lat.say_ms),
                "first_frame_ms": s.first_frame_ms.get(seq),
            }
        out.append(
            {
                "seq": seq,
                "t": _r(d.ts - t0),
                "turn": d.turn,
                "trigger": d.trigger,
                "state_from": d.state_from,
                "state_to": d.state_to,
                "intent": d.intent,
                "slots": dict(d.slots),
                "text": d.text,
                "nlu_source": d.nlu_source,
                "latency": latency,
            }
        )
    return out


def _marks(events: list[Stored], t0: float) -> list[dict[str, Any]]:
    """Single moments on the timeline: DTMF, barge-ins, errors, take-overs, gaps, the end."""
    out: list[dict[str, Any]] = []

    def mark(h: Stored, kind: str, text: str, at: float | None = None) -> None:
        when = h.event.ts - t0 if at is None else at
        out.append({"seq": h.seq, "t": _r(when), "kind": kind, "text": text})

    for h in events:
        match h.event:
            case schemas.Dtmf(digit=digit):
                mark(h, "dtmf", f"DTMF {digit}")
            case schemas.BargeIn(utterance_id=u, source=source):
                mark(h, "bargein", f"barge-in over {u} ({source})")
            case schemas.Error(source=source, code=code, message=message):
                mark(h, "error", f"{source}: {code}: {message}")
            case schemas.Claimed(service=service, takeover=True, epoch=epoch):
                mark(h, "takeover", f"{service} taken over (epoch {epoch})")
            case schemas.Gap(from_s=a, to_s=b, reason=reason):
                mark(h, "gap", f"audio {a:.1f}-{b:.1f} s not transcribed ({reason})", a)
            case schemas.Hangup(by=by, reason=reason):
                mark(h, "hangup", f"hung up by {by} ({reason})")
            case schemas.Transfer(target=target):
                mark(h, "transfer", f"transfer to {target}")
            case schemas.Ticket(state=state, number=number):
                mark(h, "ticket", f"ticket {state}" + (f" n° {number}" if number else ""))
    return out


def _said(say: schemas.Say) -> str:
    if say.phrase is not None:
        return PHRASES.get(say.phrase, say.phrase)
    return say.text or ""


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)
