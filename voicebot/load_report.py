"""The load caller's report: per-call lines and the aggregate, as text and as JSON."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, TextIO

from voicebot.load_caller import LegResult, RunResult
from voicebot.load_figures import (
    ProviderDelays,
    Turn,
    breakdown,
    percentile,
    pipeline_added,
    summarise_latency,
    summarise_pacing,
)
from voicebot.load_follow import SayFollower


def turns_of(leg: LegResult, follower: SayFollower | None) -> list[Turn]:
    """The call's turns (0: the opening), split where the pipeline's events allow."""
    events = follower.calls.get(leg.call_id) if follower is not None else None
    out = []
    for i, timing in enumerate(leg.turns):
        answer, stt, brain, way_out = "", None, None, None
        line = timing.line
        known = events is not None and line is not None and line.end_s is not None
        if known and timing.latency_s is not None:
            assert events is not None and line is not None and line.end_s is not None
            end = leg.wall0 + line.end_s
            split = breakdown(
                end,
                end + timing.latency_s,
                events.finals,
                [(s.ts, s.kind) for s in events.says],
            )
            answer, stt, brain, way_out = split.answer, split.stt_s, split.brain_s, split.out_s
        out.append(
            Turn(leg.call_id, i, timing.latency_s, timing.waits_s, answer, stt, brain, way_out)
        )
    return out


def figures(
    result: RunResult, follower: SayFollower | None, delays: ProviderDelays | None
) -> dict[str, Any]:
    legs = result.legs
    outcomes = Counter(leg.outcome for leg in legs)
    turns = [t for leg in legs for t in turns_of(leg, follower)]
    spoken = [t for t in turns if t.line > 0]
    timings = [tt for leg in legs for tt in leg.turns if tt.line is not None]
    tick = sorted(result.tick_lateness_s)
    per_call_dead_air = [sum(sum(tt.waits_s) for tt in leg.turns) for leg in legs]
    out: dict[str, Any] = {
        "calls": len(legs),
        "completed": outcomes["completed"],
        "ended_by_bot": outcomes["ended_by_bot"],
        "held": outcomes["held"],
        "dropped": outcomes["dropped"],
        "drop_reasons": dict(Counter(leg.reason for leg in legs if leg.outcome == "dropped")),
        "window_s": round(result.window_s, 3),
        "pacing": dataclasses.asdict(summarise_pacing(leg.pacing for leg in legs)),
        "welcome_ms": _latency(t.latency_s for t in turns if t.line == 0),
        "turn_latency_ms": _latency(t.latency_s for t in spoken),
        "lines_spoken": len(spoken),
        "lines_unanswered": sum(1 for tt in timings if not tt.answered),
        "lines_talked_over": sum(1 for tt in timings if tt.talked_over),
        "answers": dict(Counter(t.answer or "unknown" for t in spoken if t.latency_s is not None)),
        "breakdown_ms": {
            "stt": _latency(t.stt_s for t in spoken),
            "brain": _latency(t.brain_s for t in spoken),
            "out": _latency(t.out_s for t in spoken),
        },
        "dead_air_s": {
            "mean_per_call": round(sum(per_call_dead_air) / max(1, len(legs)), 3),
            "longest_wait": round(max((w for t in turns for w in t.waits_s), default=0.0), 3),
        },
        "caller_tick": {
            "lateness_p50_ms": _ms(percentile(tick, 0.5)),
            "lateness_p99_ms": _ms(percentile(tick, 0.99)),
            "lateness_max_ms": _ms(tick[-1] if tick else None),
            "skipped": result.ticks_skipped,
        },
        "errors": sum(len(leg.errors) for leg in legs),
    }
    if delays is not None:
        out["provider_delays_ms"] = {
            "stt": delays.stt_s * 1000,
            "llm": delays.llm_s * 1000,
            "tts_text": delays.tts_s * 1000,
        }
        out["pipeline_added_ms"] = _latency(pipeline_added(turns, delays))
    return out


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 3)


def _latency(values: Any) -> dict[str, Any]:
    return dataclasses.asdict(summarise_latency(v for v in values if v is not None))


def per_call(leg: LegResult, follower: SayFollower | None = None) -> dict[str, Any]:
    latencies = sorted(t.latency_s for t in leg.turns if t.line is not None and t.latency_s)
    return {
        "call_id": leg.call_id,
        "outcome": leg.outcome,
        "reason": leg.reason,
        "connect_s": round(leg.connect_s, 3),
        "duration_s": round(leg.duration_s, 3),
        "frames": leg.pacing.frames,
        "lateness_p99_ms": _ms(percentile(sorted(leg.pacing.lateness), 0.99)),
        "lateness_max_ms": _ms(max(leg.pacing.lateness, default=None)),
        "gaps": leg.pacing.gaps,
        "bursts": leg.pacing.bursts,
        "deficit_frames": leg.pacing.deficit,
        "lines": len([ln for ln in leg.lines if ln.end_s is not None]),
        "latency_p50_ms": _ms(percentile(latencies, 0.5)),
        "latency_max_ms": _ms(latencies[-1] if latencies else None),
        "dead_air_s": round(sum(sum(t.waits_s) for t in leg.turns), 3),
        "errors": leg.errors,
        "turns": [
            {
                "line": t.line,
                "latency_ms": _ms(t.latency_s),
                "answer": t.answer,
                "stt_ms": _ms(t.stt_s),
                "brain_ms": _ms(t.brain_s),
                "out_ms": _ms(t.out_s),
            }
            for t in turns_of(leg, follower)
        ],
    }


def _f(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def print_report(result: RunResult, figs: dict[str, Any], out: TextIO, *, calls: bool) -> None:
    if calls:
        print(
            "call      connect frames  p99 ms  max ms gaps bursts deficit lines "
            "lat p50  lat max  dead air  outcome",
            file=out,
        )
        for leg in result.legs:
            c = per_call(leg)
            print(
                f"{c['call_id'][:8]}  {c['connect_s']:6.2f}s {c['frames']:6d} "
                f"{_f(c['lateness_p99_ms'], '7.2f'):>7} {_f(c['lateness_max_ms'], '7.2f'):>7} "
                f"{c['gaps']:4d} {c['bursts']:6d} {c['deficit_frames']:7d} {c['lines']:5d} "
                f"{_f(c['latency_p50_ms'], '.0f'):>7} {_f(c['latency_max_ms'], '.0f'):>8} "
                f"{c['dead_air_s']:8.1f}s  {c['outcome']}"
                + (f" ({c['reason']})" if c["outcome"] == "dropped" else ""),
                file=out,
            )
    p = figs["pacing"]
    lines = [
        f"{figs['calls']} calls: {figs['completed']} completed, {figs['ended_by_bot']} ended "
        f"early by the bot, {figs['held']} held to the end, {figs['dropped']} dropped"
        + (f" {figs['drop_reasons']}" if figs["dropped"] else ""),
        f"pacing as received over {figs['window_s']:.1f} s: lateness p50 "
        f"{_f(p['lateness_p50_ms'], '.2f')} / p99 {_f(p['lateness_p99_ms'], '.2f')} / max "
        f"{_f(p['lateness_max_ms'], '.2f')} ms, gaps {p['gaps']}, bursts {p['bursts']}, "
        f"deficit {p['deficit_frames']} frames ({p['deficit_pct']:.2f} %)",
        _latency_line("welcome (connect -> first bot voice)", figs["welcome_ms"]),
        _latency_line(
            f"turn latency ({figs['lines_spoken']} lines, {figs['lines_unanswered']} unanswered)",
            figs["turn_latency_ms"],
        ),
    ]
    if "pipeline_added_ms" in figs:
        d = figs["provider_delays_ms"]
        lines.append(
            _latency_line(
                f"  pipeline-added (minus STT {d['stt']:.0f} + LLM {d['llm']:.0f} "
                f"[+ TTS {d['tts_text']:.0f} for text] ms)",
                figs["pipeline_added_ms"],
            )
        )
    b = figs["breakdown_ms"]
    if b["stt"]["turns"]:
        lines.append(
            f"  where: line end -> final p50 {_f(b['stt']['p50_ms'], '.0f')} ms, "
            f"final -> say p50 {_f(b['brain']['p50_ms'], '.0f')} ms, say -> first frame p50 "
            f"{_f(b['out']['p50_ms'], '.0f')} ms (answers {figs['answers']})"
        )
    t = figs["caller_tick"]
    lines += [
        f"dead air: {figs['dead_air_s']['mean_per_call']:.2f} s per call, longest wait "
        f"{figs['dead_air_s']['longest_wait']:.2f} s",
        f"this caller's own ticker: lateness p99 {_f(t['lateness_p99_ms'], '.2f')} / max "
        f"{_f(t['lateness_max_ms'], '.2f')} ms, {t['skipped']} ticks skipped",
    ]
    for line in lines:
        print(line, file=out)


def _latency_line(title: str, s: dict[str, Any]) -> str:
    if not s["turns"]:
        return f"{title}: none"
    return (
        f"{title}: p50 {_f(s['p50_ms'], '.0f')} / p95 {_f(s['p95_ms'], '.0f')} / p99 "
        f"{_f(s['p99_ms'], '.0f')} / max {_f(s['max_ms'], '.0f')} ms over {s['turns']}"
    )
