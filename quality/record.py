"""One call, measured: the caller's result and the bot's stored events -> a `CallRecord`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from events import schemas
from events.phrases import PHRASES
from quality import metrics
from quality.personas import Persona
from quality.synth import Condition
from voicebot.caller import CallResult

SPOKEN = ("say", "bargein", "wav")


@dataclass
class LineRecord:
    tag: str  # the question kind it answers
    kind: str  # say | dtmf
    said: str
    heard: str | None  # None for key presses
    edits: int | None
    ref_words: int | None
    start_s: float | None
    end_s: float | None
    latency_s: float | None
    waits_s: list[float]
    talked_over: bool


@dataclass
class CallRecord:
    persona: str
    condition: str
    voice: str
    rate: int
    noise: str | None
    call_id: str
    expected: str
    outcome: str | None
    category: str | None
    customer: str | None
    success: bool
    reasons: list[str]
    duration_s: float
    hung_up_by: str
    gave_up: bool
    turns: int
    prompts: int
    repeat_prompts: int
    longest_run: int
    longest_run_say: str | None
    no_input_while_talking: bool
    welcome_latency_s: float | None
    dead_air_longest_s: float
    dead_air_total_s: float
    stale_questions: int
    phantom_finals: int  # transcripts of no caller line: noise heard as words
    errors: list[str] = field(default_factory=list)
    lines: list[LineRecord] = field(default_factory=list)
    dialog: list[str] = field(default_factory=list)  # who said what, in order, for reading


def build(
    persona: Persona,
    condition: Condition,
    result: CallResult,
    events: Sequence[Any],
    *,
    gave_up: bool = False,
    stale_questions: int = 0,
    errors: Sequence[str] = (),
) -> CallRecord:
    decisions = [e for e in events if isinstance(e, schemas.Decision)]
    says = [e for e in events if isinstance(e, schemas.Say)]
    wall = result.started_wall
    finals = [
        metrics.Heard(e.ts - wall, e.start, e.end, e.text)
        for e in events
        if isinstance(e, schemas.Final)
    ]
    snap = decisions[-1].snapshot if decisions else {}
    outcome, category = snap.get("outcome"), snap.get("category")
    customer = snap.get("customer_name") if snap.get("customer_id") is not None else None
    reasons = metrics.judge(persona.expect, outcome, category, customer)

    timings = result.turn_timings()
    spoken = [t.line for t in timings if t.line is not None and t.line.kind in SPOKEN]
    heard, phantom = metrics.heard_per_line(
        [(ln.start_s or 0.0, ln.end_s or 0.0) for ln in spoken], finals
    )
    heard_of = {id(ln): h for ln, h in zip(spoken, heard, strict=True)}
    lines: list[LineRecord] = []
    for t in timings:
        if t.line is None:
            continue
        h = heard_of.get(id(t.line))
        errs = metrics.word_errors(t.line.text, h) if h is not None else None
        lines.append(
            LineRecord(
                tag=t.line.tag,
                kind=t.line.kind,
                said=t.line.text,
                heard=h,
                edits=errs.edits if errs else None,
                ref_words=errs.ref_words if errs else None,
                start_s=_round(t.line.start_s),
                end_s=_round(t.line.end_s),
                latency_s=_round(t.latency_s),
                waits_s=[round(w, 3) for w in t.waits_s],
                talked_over=t.talked_over,
            )
        )
    waits = [w for t in timings if t.line is not None for w in t.waits_s]
    welcome = timings[0].latency_s if timings else None
    waits += [welcome] if welcome is not None else []
    keys = [metrics.say_key(s.phrase, s.text) for s in says]
    run, run_key = metrics.longest_run(keys)
    marks = [metrics.DecisionMark(d.ts, d.trigger, d.actions) for d in decisions]
    speech_ends = [wall + (ln.end_s or 0) for ln in spoken]
    return CallRecord(
        persona=persona.key,
        condition=condition.label,
        voice=condition.voice,
        rate=condition.rate,
        noise=condition.noise,
        call_id=result.call_id,
        expected=persona.expect.describe(),
        outcome=outcome,
        category=category,
        customer=customer,
        success=not reasons,
        reasons=reasons,
        duration_s=round(result.duration_s, 2),
        hung_up_by=result.hung_up_by,
        gave_up=gave_up,
        turns=len(lines),
        prompts=sum(1 for k in keys if k != metrics.HOLD),
        repeat_prompts=metrics.repeat_prompts(keys),
        longest_run=run,
        longest_run_say=_readable(run_key),
        no_input_while_talking=metrics.no_input_while_talking(outcome, marks, speech_ends),
        welcome_latency_s=_round(welcome),
        dead_air_longest_s=round(max(waits, default=0.0), 3),
        dead_air_total_s=round(sum(waits), 3),
        stale_questions=stale_questions,
        phantom_finals=phantom,
        errors=[*result.errors, *errors],
        lines=lines,
        dialog=_dialog(says, lines, wall, outcome),
    )


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _readable(key: str | None) -> str | None:
    if key is None:
        return None
    return key.removeprefix("text:") if key.startswith("text:") else PHRASES.get(key, key)


def _dialog(
    says: Sequence[schemas.Say], lines: Sequence[LineRecord], wall: float, outcome: str | None
) -> list[str]:
    said = [(s.ts, f"Bot: {_readable(metrics.say_key(s.phrase, s.text))}") for s in says]
    for ln in lines:
        what = f"DTMF {ln.said}" if ln.kind == "dtmf" else ln.said
        heard = f"  (heard: {ln.heard!r})" if ln.kind != "dtmf" else ""
        said.append((wall + (ln.start_s or 0), f"Caller [{ln.tag}]: {what}{heard}"))
    return [text for _, text in sorted(said)] + [f"-> {outcome or 'no outcome'}"]
