"""`voicebot trace [CALL_ID]`: a live, one-line-per-event view of calls (`--json` for machines).

Without an id it follows every new call on the control-plane subjects (audio is left out);
with an id it prints the call's stored history from the CALLS stream, then follows it live.
`Tracer` turns decoded events into lines and holds what a line needs from earlier events
(the call's state, when each utterance was asked for), so it is testable without a bus.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import msgspec

from events import codec, schemas, streams, subjects
from events.auth import Login
from events.bus import Bus, Envelope
from events.tail import NEW, StreamTail
from voicebot.dialog_diff import phrase_text


@dataclass
class _Call:
    state: str = "INIT"
    said_at: dict[str, float] = field(default_factory=dict)  # utterance id -> say ts
    outcome: str | None = None


@dataclass
class Tracer:
    """Formats events as lines (or JSON objects) for one or many calls."""

    json_out: bool = False
    calls: dict[str, _Call] = field(default_factory=dict)

    def format(self, event: Any, subject: str = "") -> str | None:
        cid = event.call_id
        call = self.calls.setdefault(cid, _Call())
        text = self._describe(call, event)
        if text is None:
            return None
        if self.json_out:
            obj = {
                "ts": event.ts,
                "call_id": cid,
                "subject": subject,
                "kind": codec.tag_of(event),
                "state": call.state,
                "text": text,
                "event": msgspec.to_builtins(event),
            }
            return json.dumps(obj, ensure_ascii=False)
        stamp = datetime.datetime.fromtimestamp(event.ts).strftime("%H:%M:%S.%f")[:-3]
        return f"{stamp} {cid[:8]} {call.state:<14} {text}"

    def _describe(self, call: _Call, event: Any) -> str | None:
        match event:
            case schemas.Started(caller=caller, edge=edge):
                return f"call started (caller {caller or 'unknown'}, edge {edge or '?'})"
            case schemas.Final(text=text, latency_ms=ms):
                if not text.strip():
                    return None  # the provider's empty results over silence
                return f'Caller: "{text}"' + (f"  (stt {ms:.0f} ms)" if ms is not None else "")
            case schemas.Interim(text=text):
                return f'  … "{text}"' if text.strip() else None
            case schemas.SpeechStarted():
                return "  (caller speaking)"
            case schemas.UtteranceEnd():
                return None  # implied by the final before it
            case schemas.Gap(from_s=a, to_s=b, reason=reason):
                return f"STT gap {a:.2f}-{b:.2f} s ({reason}): audio not transcribed"
            case schemas.Decision() as d:
                return self._decision(call, d)
            case schemas.Say() as s:
                call.said_at[s.utterance_id] = s.ts
                cut = "" if s.interruptible else " (not interruptible)"
                return f'Bot [{s.utterance_id}]: "{phrase_text(s)}"{cut}'
            case schemas.PlaybackStarted(utterance_id=u, ts=ts):
                asked = call.said_at.get(u)
                first = f", first frame {(ts - asked) * 1000:.0f} ms after say" if asked else ""
                return f"  playing {u}{first}"
            case schemas.PlaybackFinished(utterance_id=u, frames=n):
                return f"  played {u} ({n * 20 / 1000:.1f} s)"
            case schemas.PlaybackInterrupted(utterance_id=u, reason=reason):
                return f"  interrupted {u} ({reason})"
            case schemas.Dtmf(digit=digit):
                return f"Caller: DTMF {digit}"
            case schemas.BargeIn(utterance_id=u, source=source):
                return f"barge-in over {u} ({source})"
            case schemas.Error(source=source, code=code, message=message):
                return f"error from {source}: {code}: {message}"
            case schemas.Flush(utterance_id=u):
                return f"-> flush {u or 'all'}"
            case schemas.HangupCall(reason=reason):
                return f"-> hang up ({reason})"
            case schemas.Transfer(target=target):
                return f"-> transfer to {target}"
            case schemas.Hangup(by=by, reason=reason):
                return f"hung up by {by} ({reason})"
            case schemas.Ended(outcome=outcome, duration_s=s, reason=reason):
                return (
                    f"call ended: {outcome}, {s:.1f} s ({reason}); "
                    f"dialog outcome {call.outcome or 'none'}"
                )
        return None

    @staticmethod
    def _decision(call: _Call, d: schemas.Decision) -> str | None:
        call.state = d.state_to
        call.outcome = d.snapshot.get("outcome") or call.outcome
        said = [a for a in d.actions if a.startswith(("say", "end:", "open_ticket", "find_"))]
        if d.state_from == d.state_to and d.text is None and not said:
            return None  # bookkeeping: timers armed, playback progress
        parts = [f"{d.state_from} -> {d.state_to} [{d.trigger}]"]
        if d.intent is not None:
            parts.append(f"intent={d.intent}")
        if d.slots:
            parts.append("slots=" + ",".join(f"{k}={v}" for k, v in sorted(d.slots.items())))
        if d.latency is not None:
            lat = d.latency
            figures = [
                f"{name} {value:.0f} ms"
                for name, value in (
                    ("stt", lat.transcript_ms),
                    ("nlu", lat.nlu_ms),
                    ("say", lat.say_ms),
                )
                if value is not None
            ]
            if figures:
                parts.append("(" + ", ".join(figures) + ")")
        return "  ".join(parts)


# The control-plane subjects of every call: `call.>` minus audio.
LIVE_SUBJECTS = streams.CALLS_SUBJECTS


async def trace(
    url: str,
    call_id: str | None,
    *,
    json_out: bool = False,
    out: TextIO = sys.stdout,
    count: int = 0,
    ready: asyncio.Event | None = None,
    login: Login | None = None,
) -> int:
    """Print events until `count` lines were printed (0: until cancelled). Returns the count.
    `ready` is set once live calls are followed (the server has the subscriptions)."""
    if call_id is not None and not subjects.is_call_id(call_id):
        raise ValueError(f"not a call id (lower-case hyphenated UUID): {call_id!r}")
    tracer = Tracer(json_out=json_out)
    bus = await Bus.connect(url, "trace", login=login)
    printed = 0
    done = asyncio.Event()

    def emit(env: Envelope) -> None:
        nonlocal printed
        if done.is_set():
            return
        line = tracer.format(env.event, env.subject)
        if line is None:
            return
        print(line, file=out, flush=True)
        printed += 1
        if count and printed >= count:
            done.set()

    try:
        if call_id is not None:
            await _follow_call(bus, call_id, emit, done)
        else:
            # A stream tail rather than plain subscriptions: across a NATS restart it resumes
            # after the last event printed, so nothing published meanwhile goes missing.
            async with bus.tail(
                streams.CALLS, list(LIVE_SUBJECTS), start=NEW, name="trace"
            ) as tail:
                if ready is not None:
                    ready.set()
                reader = asyncio.create_task(_print_live(bus, tail, emit, done))
                stop = asyncio.create_task(done.wait())
                try:
                    await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (reader, stop):
                        task.cancel()
                    await asyncio.gather(reader, stop, return_exceptions=True)
    finally:
        await bus.close()
    return printed


async def _print_live(bus: Bus, tail: StreamTail, emit: Any, done: asyncio.Event) -> None:
    async for msg in tail:
        env = bus.decode(msg)
        if env is not None:
            emit(env)
        if done.is_set():
            return


async def _follow_call(bus: Bus, call_id: str, emit: Any, done: asyncio.Event) -> None:
    """History from the CALLS stream, then live: one ordered consumer does both."""

    async def read() -> None:
        async for env in bus.replay(subjects.all_of(call_id), stream=streams.CALLS):
            emit(env)
            if done.is_set():
                return

    reader = asyncio.create_task(read(), name=f"trace-{call_id}")
    stop = asyncio.create_task(done.wait())
    try:
        await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, stop):
            task.cancel()
        await asyncio.gather(reader, stop, return_exceptions=True)
