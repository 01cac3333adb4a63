"""`voicebot replay FILE|CALL_ID`: re-run a recorded call through a running pipeline, diff it.

The call is re-run under a new call id, and what the pipeline decided and said is compared with
the recording (`dialog_diff`). Two modes:

- `brain`: the brain alone, deterministic, no provider. We play the edge and the STT worker:
  the recording's caller-side events (started, transcripts, DTMF, barge-ins, provider errors,
  hang-up) and the edge's playback reports are published under the new id, in their original
  order and with their original gaps divided by `speed`. Each one also waits until the replayed
  brain has said every utterance the original had said before it (and, for a hang-up that
  followed the bot's control, until the brain sent its control): causality is kept whatever the
  speed, so a no-input timer that fired in the original fires in the replay before the next
  input, and one that did not fire has even less time to fire. Utterances the replay says that
  the original never said get a synthetic playback so the brain can carry on.
- `full`: every stage. The recorded caller audio goes into the AudioSocket port at real time
  (with the DTMF at their times) as a caller would, and STT, brain and TTS run for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import msgspec

from edge import framing
from events import schemas, subjects
from events.audio import FRAME_BYTES, H_AUDIO_T, SAMPLE_RATE, SILENCE
from events.auth import Login
from events.bus import Bus, Envelope
from voicebot import dialog_diff, recording
from voicebot.export import read_call
from voicebot.recording import Recording

log = logging.getLogger("voicebot.replay")

Mode = Literal["brain", "full"]

# Caller-side and edge-side events the brain consumes; the rest (decisions, says, controls,
# interim transcripts) is what the pipeline under test produces.
_FED = (
    schemas.Started,
    schemas.Dtmf,
    schemas.Hangup,
    schemas.Ended,
    schemas.BargeIn,
    schemas.Error,
    schemas.Final,
    schemas.SpeechStarted,
    schemas.UtteranceEnd,
    schemas.Gap,
    schemas.PlaybackStarted,
    schemas.PlaybackFinished,
    schemas.PlaybackInterrupted,
)
_PLAYBACK = (schemas.PlaybackStarted, schemas.PlaybackFinished, schemas.PlaybackInterrupted)
_DIVERGED_GATE_S = 0.5


class ReplayError(RuntimeError):
    """The recording cannot be replayed in this mode (no audio for `full`, bad speed...)."""


@dataclass(frozen=True)
class Cue:
    """One event to publish: after `gap_s` (original) and once `needs` were said in the replay."""

    gap_s: float
    subject_tail: str  # the subject after `call.<id>.`
    event: Any
    needs: frozenset[str]  # utterance ids the original had said before this event
    after_control: bool = False  # the original's bot control came before this hang-up


@dataclass(frozen=True)
class ReplayResult:
    original: dialog_diff.Dialog
    replay: dialog_diff.Dialog
    diff: list[str]
    call_id: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not self.diff


def cues(events: list[tuple[float, str, Any]]) -> list[Cue]:
    """The brain-mode schedule from a call's (ts, subject, event) list, in stream order."""
    said: set[str] = set()
    control = False
    out: list[Cue] = []
    prev_t: float | None = None
    for ts, subject, event in events:
        match event:
            case schemas.Say(utterance_id=u):
                said.add(u)
            case schemas.HangupCall() | schemas.Transfer():
                control = True
        if not isinstance(event, _FED):
            continue
        gap = 0.0 if prev_t is None else max(0.0, ts - prev_t)
        prev_t = ts
        tail = subject.split(".", 2)[2]
        # The edge plays what it was told: a playback report waits for its own say only.
        needs = {event.utterance_id} if isinstance(event, _PLAYBACK) else said
        ends = isinstance(event, schemas.Ended) or (
            isinstance(event, schemas.Hangup) and event.by != "caller"
        )
        out.append(Cue(gap, tail, event, frozenset(needs), after_control=control and ends))
    return out


def utterances(rec: Recording) -> list[str]:
    """What the caller said, as the original STT heard it: scripts a loopback STT for `full`."""
    return [e.text for e in rec.events() if isinstance(e, schemas.Final) and e.text.strip()]


class _Watch:
    """What the replayed call's pipeline has produced so far, from a core subscription."""

    def __init__(self) -> None:
        self.said: dict[str, schemas.Say] = {}
        self.flushed: set[str] = set()
        self.control: schemas.Control | None = None
        self.closed = False
        self.changed = asyncio.Condition()

    async def on_msg(self, env: Envelope) -> None:
        match env.event:
            case schemas.Say() as s:
                self.said[s.utterance_id] = s
            case schemas.Flush(utterance_id=u):
                self.flushed.add(u or "*")
            case schemas.HangupCall() | schemas.Transfer() as c:
                self.control = c
            case schemas.Decision(state_to="CLOSED"):
                self.closed = True
            case _:
                return
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, check: Callable[[], bool], within_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s), self.changed:
                await self.changed.wait_for(check)
        return check()


async def replay_call(
    bus: Bus,
    rec: Recording,
    *,
    mode: Mode = "brain",
    speed: float = 1.0,
    audiosocket: tuple[str, int] | None = None,
    gate_timeout_s: float = 10.0,
    settle_timeout_s: float = 20.0,
) -> ReplayResult:
    """Re-run `rec` under a new call id and compare dialogs; `bus` reaches the pipeline."""
    if speed <= 0:
        raise ReplayError(f"speed must be > 0, got {speed}")
    new_id = str(uuid.uuid4())
    log.info("[%s] replaying call %s (%s mode, speed %g)", new_id, rec.call_id, mode, speed)
    watch = _Watch()
    sub = await bus.subscribe(subjects.all_of(new_id), watch.on_msg)
    t0 = time.monotonic()
    notes: list[str] = []
    try:
        if mode == "brain":
            await _feed_brain(
                bus, rec, new_id, watch, speed=speed, gate_timeout_s=gate_timeout_s, notes=notes
            )
        else:
            if audiosocket is None:
                raise ReplayError("full mode needs the AudioSocket address (host, port)")
            if speed != 1.0:
                raise ReplayError("full mode runs at real time: audio cannot be sped up")
            await _feed_audio(rec, new_id, audiosocket, watch, notes)
        if not await watch.wait_for(lambda: watch.closed, settle_timeout_s):
            notes.append(f"the replayed call did not reach CLOSED in {settle_timeout_s:.0f} s")
        await asyncio.sleep(0.2)  # a decision's follow-ups (ticket, outcome) land just after
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    history = [e.event for e in await bus.history(subjects.all_of(new_id))]
    notes += _policy_notes(rec.events(), history)
    original = dialog_diff.extract(rec.events())
    replayed = dialog_diff.extract(history)
    return ReplayResult(
        original,
        replayed,
        dialog_diff.diff(original, replayed),
        new_id,
        time.monotonic() - t0,
        notes,
    )


def _timers(events: list[Any]) -> dict[str, str]:
    """Timer durations the brain armed (`timer:no_input:8` -> {"no_input": "8"})."""
    out: dict[str, str] = {}
    for e in events:
        if isinstance(e, schemas.Decision):
            for action in e.actions:
                kind, _, rest = action.partition(":")
                if kind == "timer":
                    name, _, seconds = rest.partition(":")
                    out.setdefault(name, seconds)
    return out


def _policy_notes(original: list[Any], replayed: list[Any]) -> list[str]:
    """A pipeline with other timer settings than the recording's cannot be expected to agree."""
    a, b = _timers(original), _timers(replayed)
    return [
        f"timer {name} is {b[name]} s in this pipeline, {a[name]} s in the recording "
        "(see the recording's setup.env)"
        for name in sorted(a.keys() & b.keys())
        if a[name] != b[name]
    ]


async def _feed_brain(
    bus: Bus,
    rec: Recording,
    new_id: str,
    watch: _Watch,
    *,
    speed: float,
    gate_timeout_s: float,
    notes: list[str],
) -> None:
    schedule = cues([(m.ts, m.subject, m.event()) for m in rec.calls()])
    original_says = {e.utterance_id: _said(e) for e in rec.events() if isinstance(e, schemas.Say)}
    original_uids = original_says.keys()

    def diverged() -> bool:
        return any(original_says.get(u) != _said(say) for u, say in watch.said.items())

    ended = False
    synthetic: dict[str, asyncio.Task[None]] = {}

    def fake_playbacks() -> None:
        for u, say in watch.said.items():
            if u not in original_uids and u not in synthetic:
                synthetic[u] = asyncio.create_task(_fake_playback(bus, new_id, say, watch, speed))

    try:
        for cue in schedule:
            await asyncio.sleep(cue.gap_s / speed)
            fake_playbacks()
            # Once the replay said something the original did not, what it waits for may
            # never come: wait briefly, the diff will tell.
            timeout = _DIVERGED_GATE_S if diverged() else gate_timeout_s
            ready = await watch.wait_for(
                lambda c=cue: (
                    c.needs <= watch.said.keys()  # type: ignore[misc]
                    and (not c.after_control or watch.control is not None)
                ),
                timeout,
            )
            if not ready:
                missing = sorted(cue.needs - watch.said.keys())
                what = ", ".join(missing) or "the bot's hang-up or transfer"
                notes.append(f"the replay never got to {what} (before {cue.subject_tail})")
                if isinstance(cue.event, _PLAYBACK):
                    continue  # never said in the replay: nothing to report playing
            event = msgspec.structs.replace(cue.event, call_id=new_id, ts=time.time())
            await bus.publish(f"call.{new_id}.{cue.subject_tail}", event)
            ended = ended or isinstance(event, schemas.Ended)
        if not ended:
            # The original call never ended (exported live): end the replay as a hang-up would.
            await watch.wait_for(lambda: watch.control is not None, gate_timeout_s)
            await _publish_end(bus, new_id, "caller" if watch.control is None else "bot")
    finally:
        for task in synthetic.values():
            task.cancel()
        await asyncio.gather(*synthetic.values(), return_exceptions=True)


def _said(say: schemas.Say) -> str:
    return say.phrase if say.phrase is not None else dialog_diff.normalise(say.text or "")


async def _fake_playback(
    bus: Bus, call_id: str, say: schemas.Say, watch: _Watch, speed: float
) -> None:
    """Play an utterance the original never said: about 70 ms a character, like espeak."""
    text = dialog_diff.phrase_text(say)
    seconds = max(0.5, 0.07 * len(text)) / speed
    subject = subjects.playback(call_id)
    u = say.utterance_id
    await bus.publish(
        subject, schemas.PlaybackStarted(call_id=call_id, ts=time.time(), utterance_id=u)
    )
    cut = await watch.wait_for(lambda: u in watch.flushed or "*" in watch.flushed, seconds)
    frames = int(seconds * 50)
    done: schemas.Playback
    if cut and say.interruptible:
        done = schemas.PlaybackInterrupted(call_id=call_id, ts=time.time(), utterance_id=u)
    else:
        if cut:
            await asyncio.sleep(seconds)
        done = schemas.PlaybackFinished(
            call_id=call_id, ts=time.time(), utterance_id=u, frames=frames
        )
    await bus.publish(subject, done)


async def _publish_end(bus: Bus, call_id: str, by: Literal["caller", "bot"]) -> None:
    now = time.time()
    await bus.publish(
        subjects.event(call_id, "hangup"),
        schemas.Hangup(call_id=call_id, ts=now, by=by, reason="replay_end"),
    )
    await bus.publish(
        subjects.event(call_id, "ended"),
        schemas.Ended(call_id=call_id, ts=now, reason="replay_end", outcome="hangup", duration_s=0),
    )


# --- full mode ---------------------------------------------------------------------------


def caller_audio(rec: Recording) -> bytes:
    """The caller's audio as one buffer on the call's audio clock (gaps filled with silence)."""
    chunks = rec.audio("in")
    if not chunks:
        raise ReplayError(f"recording of {rec.call_id} holds no caller audio (audio.in)")
    end = 0
    placed: list[tuple[int, bytes]] = []
    for m in chunks:
        t = float((m.headers or {}).get(H_AUDIO_T, end / (2 * SAMPLE_RATE)))
        at = int(t * SAMPLE_RATE) * 2
        placed.append((at, m.data))
        end = max(end, at + len(m.data))
    buf = bytearray(end + (-end) % FRAME_BYTES)
    for at, data in placed:
        buf[at : at + len(data)] = data
    return bytes(buf)


async def _feed_audio(
    rec: Recording, new_id: str, address: tuple[str, int], watch: _Watch, notes: list[str]
) -> None:
    events = rec.events()
    t_start = next((e.ts for e in events if isinstance(e, schemas.Started)), events[0].ts)
    dtmf = [(e.ts - t_start, e.digit) for e in events if isinstance(e, schemas.Dtmf)]
    hangups = [e for e in events if isinstance(e, schemas.Hangup)]
    caller_hangup = next((e.ts - t_start for e in hangups if e.by == "caller"), None)
    pcm = caller_audio(rec)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout=5)
    writer.write(framing.encode_uuid(uuid.UUID(new_id).bytes))
    closed = asyncio.Event()
    drain = asyncio.create_task(_discard(reader, closed))
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    try:
        while not closed.is_set():
            now = loop.time() - start
            if caller_hangup is not None and now >= caller_hangup:
                break
            while dtmf and dtmf[0][0] <= now:
                writer.write(framing.encode_dtmf(dtmf.pop(0)[1]))
            frame = pcm[n * FRAME_BYTES : (n + 1) * FRAME_BYTES] or SILENCE
            bot_late = now > len(pcm) / (2 * SAMPLE_RATE) + 30
            if caller_hangup is None and watch.control is None and bot_late:
                # Audio done long ago and the bot has not ended the call: stop waiting.
                notes.append("the bot did not end the call 30 s after the caller's audio")
                break
            writer.write(framing.encode_audio(frame))
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
    finally:
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _discard(reader: asyncio.StreamReader, closed: asyncio.Event) -> None:
    parser = framing.Parser(server_side=False)
    try:
        while data := await reader.read(4096):
            if any(m.kind == framing.Kind.HANGUP for m in parser.feed(data)):
                break
    except (ConnectionError, framing.ProtocolError):
        pass
    finally:
        closed.set()


# --- the command -------------------------------------------------------------------------


async def load(
    bus_url: str, source: str | Path, *, audio: bool, login: Login | None = None
) -> Recording:
    """A recording from a file, or exported on the fly from the streams by call id."""
    if isinstance(source, str) and subjects.is_call_id(source):
        return await read_call(bus_url, source, audio=audio, login=login)
    return recording.read(Path(source))


async def replay(
    url: str,
    source: str | Path,
    *,
    mode: Mode = "brain",
    speed: float = 1.0,
    out: TextIO = sys.stdout,
    audiosocket: tuple[str, int] | None = None,
    login: Login | None = None,
) -> int:
    """Replay, print the diff; 0 when the dialog is the same, 1 when it differs. It publishes
    a call's events as the edge and the STT worker would: `login` is the admin user."""
    rec = await load(url, source, audio=mode == "full", login=login)
    bus = await Bus.connect(url, "replay", login=login)
    try:
        print(
            f"Replaying call {rec.call_id} ({mode} mode, speed {speed:g}) ...", file=out, flush=True
        )
        result = await replay_call(bus, rec, mode=mode, speed=speed, audiosocket=audiosocket)
    finally:
        await bus.close()
    print(format_result(result), file=out, flush=True)
    return 0 if result.same else 1


def format_result(r: ReplayResult) -> str:
    lines = [f"Replayed as call {r.call_id} in {r.seconds:.1f} s."]
    lines += [f"note: {n}" for n in r.notes]
    if r.same:
        lines.append(
            f"Same dialog: {len(r.replay.turns)} turns, states {' > '.join(r.replay.states)}, "
            f"outcome {r.replay.outcome}."
        )
    else:
        lines.append("The dialog differs:")
        lines += r.diff
    return "\n".join(lines)
