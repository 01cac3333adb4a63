"""The harness's figures over all calls: a table on the console, JSON under bench/results/."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from quality.metrics import percentile
from quality.record import CallRecord

PROJECT = Path(__file__).resolve().parent.parent
STEP_ORDER = (
    "problem", "identity", "phone", "confirm_phone", "category", "solution", "verification",
    "still_there", "stale", "give_up",
)  # fmt: skip


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _latencies(records: Sequence[CallRecord], *, heard_only: bool = False) -> list[float]:
    """Turn latencies of spoken lines (key presses are not speech): all of them, or only those
    the bot heard (no no-input re-prompt in the figure)."""
    return [
        ln.latency_s
        for r in records
        for ln in r.lines
        if ln.latency_s is not None and ln.kind != "dtmf" and (ln.heard or not heard_only)
    ]


def _figures_of(records: Sequence[CallRecord]) -> dict[str, Any]:
    lat = _latencies(records)
    prompts = sum(r.prompts for r in records)
    return {
        "calls": len(records),
        "task_success": _rate(sum(r.success for r in records), len(records)),
        "latency_p50_s": percentile(lat, 50),
        "latency_p95_s": percentile(lat, 95),
        "latency_n": len(lat),
        "repeat_prompt_rate": _rate(sum(r.repeat_prompts for r in records), prompts),
    }


def summarize(records: Sequence[CallRecord]) -> dict[str, Any]:
    """Every figure the harness prints, as plain data."""
    n = len(records)
    turns = [r.turns for r in records]
    longest = max(records, key=lambda r: r.dead_air_longest_s, default=None)
    edits: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        for ln in r.lines:
            if ln.edits is not None and ln.ref_words:
                e = edits[ln.tag]
                e[0], e[1], e[2] = e[0] + ln.edits, e[1] + ln.ref_words, e[2] + 1
    total_edits = sum(e[0] for e in edits.values())
    total_ref = sum(e[1] for e in edits.values())
    causes = Counter(reason for r in records for reason in r.reasons)
    per_persona: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        per_persona[r.persona][0] += r.success
        per_persona[r.persona][1] += 1

    def split(key: Callable[[CallRecord], str]) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[CallRecord]] = defaultdict(list)
        for r in records:
            groups[key(r)].append(r)
        return {k: _figures_of(v) for k, v in sorted(groups.items())}

    heard = _latencies(records, heard_only=True)
    return {
        **_figures_of(records),
        "latency_heard_p50_s": percentile(heard, 50),
        "latency_heard_p95_s": percentile(heard, 95),
        "turns_per_call_mean": sum(turns) / n if n else None,
        "turns_per_call_max": max(turns, default=None),
        "welcome_latency_p50_s": percentile(
            [r.welcome_latency_s for r in records if r.welcome_latency_s is not None], 50
        ),
        "dead_air_longest_s": longest.dead_air_longest_s if longest else None,
        "dead_air_longest_call": f"{longest.persona} {longest.condition}" if longest else None,
        "dead_air_total_per_call_mean_s": (
            sum(r.dead_air_total_s for r in records) / n if n else None
        ),
        "dead_air_total_per_call_max_s": max((r.dead_air_total_s for r in records), default=None),
        "wer": total_edits / total_ref if total_ref else None,
        "wer_per_step": {
            tag: {"wer": e[0] / e[1], "lines": e[2], "words": e[1]}
            for tag, e in sorted(edits.items(), key=lambda kv: _step_rank(kv[0]))
        },
        "no_input_while_talking": [
            f"{r.persona} {r.condition}" for r in records if r.no_input_while_talking
        ],
        "prompt_repeated_over_twice": [
            f"{r.persona} {r.condition}: x{r.longest_run} {r.longest_run_say!r}"
            for r in records
            if r.longest_run > 2
        ],
        "bot_spoke_over_caller_lines": sum(ln.talked_over for r in records for ln in r.lines),
        "phantom_finals": sum(r.phantom_finals for r in records),
        "callers_gave_up": [f"{r.persona} {r.condition}" for r in records if r.gave_up],
        "failure_causes": causes.most_common(),
        "per_persona": {k: {"ok": v[0], "calls": v[1]} for k, v in per_persona.items()},
        "by_noise": split(lambda r: r.noise or "clean"),
        "by_voice": split(lambda r: r.voice),
        "by_rate": split(lambda r: str(r.rate)),
        "harness_errors": [f"{r.persona} {r.condition}: {e}" for r in records for e in r.errors],
    }


def _step_rank(tag: str) -> int:
    return STEP_ORDER.index(tag) if tag in STEP_ORDER else len(STEP_ORDER)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def print_table(figures: dict[str, Any], run: dict[str, Any], out: TextIO = sys.stdout) -> None:
    def p(line: str = "") -> None:
        print(line, file=out)

    p()
    p(
        f"Quality: {figures['calls']} calls ({run['personas']} personas x {run['matrix']}), "
        f"concurrency {run['concurrency']}, {run['elapsed_s'] / 60:.1f} min, {run['target']}"
    )
    p(f"  voices {', '.join(run['voices'])}; rates {run['rates']} wpm; {run['noise']}")
    p()
    rows = [
        ("task success", _pct(figures["task_success"]), "goal >= 90 %"),
        ("turns per call", f"{figures['turns_per_call_mean']:.1f} mean, "
         f"{figures['turns_per_call_max']} max", "caller lines, keypad included"),
        ("repeat-prompt rate", _pct(figures["repeat_prompt_rate"]), "bot prompts that ask again"),
        ("turn latency p50", _s(figures["latency_p50_s"]), "goal <= 0.80 s"),
        ("turn latency p95", _s(figures["latency_p95_s"]),
         f"goal <= 1.20 s; {figures['latency_n']} caller lines"),
        ("  lines the bot heard", f"{_s(figures['latency_heard_p50_s'])} / "
         f"{_s(figures['latency_heard_p95_s'])}", "p50 / p95, no re-prompt after silence"),
        ("welcome after connect p50", _s(figures["welcome_latency_p50_s"]), ""),
        ("dead air, longest", _s(figures["dead_air_longest_s"]),
         str(figures["dead_air_longest_call"])),
        ("dead air, total per call", f"{_s(figures['dead_air_total_per_call_mean_s'])} mean, "
         f"{_s(figures['dead_air_total_per_call_max_s'])} max", "silences the caller waits"),
        ("word error rate", _pct(figures["wer"]), "what the bot heard vs the script"),
        ("no_input while talking", str(len(figures["no_input_while_talking"])), "goal 0 calls"),
        ("prompt > 2x in a row", str(len(figures["prompt_repeated_over_twice"])),
         "goal 0 calls"),
        ("bot spoke over caller", str(figures["bot_spoke_over_caller_lines"]), "caller lines"),
        ("words heard in silence", str(figures["phantom_finals"]),
         "transcripts of no caller line (noise)"),
        ("callers who gave up", str(len(figures["callers_gave_up"])),
         f"after {run['max_lines']} lines or {run['max_call_s']:.0f} s"),
    ]  # fmt: skip
    for name, value, note in rows:
        p(f"  {name:<27} {value:<24} {note}")
    p()
    p("  word error rate per dialog step (the question the line answered):")
    for tag, w in figures["wer_per_step"].items():
        p(f"    {tag:<16} {_pct(w['wer']):>8}   {w['lines']:3} lines, {w['words']:4} words")
    p()
    p("  by condition:          success   latency p50 / p95     repeat-prompt rate")
    for group in ("by_noise", "by_voice", "by_rate"):
        for key, g in figures[group].items():
            p(
                f"    {key:<20} {_pct(g['task_success']):>8}   "
                f"{_s(g['latency_p50_s'])} / {_s(g['latency_p95_s'])}   "
                f"{_pct(g['repeat_prompt_rate'])}"
            )
    if figures["failure_causes"]:
        p()
        p("  failure causes (calls):")
        for cause, count in figures["failure_causes"][:12]:
            p(f"    {count:3}  {cause}")
    for title, key in (
        ("ended in no_input while the caller talked", "no_input_while_talking"),
        ("a prompt said more than twice in a row", "prompt_repeated_over_twice"),
        ("harness problems (not the bot's)", "harness_errors"),
    ):
        if figures[key]:
            p()
            p(f"  {title}:")
            for item in figures[key][:15]:
                p(f"    {item}")
    p()
    p("  per persona (calls that ended as expected):")
    items = sorted(figures["per_persona"].items())
    for i in range(0, len(items), 3):
        p("    " + "".join(f"{k:<30}{v['ok']}/{v['calls']}   " for k, v in items[i : i + 3]))


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    with contextlib.suppress(OSError, ValueError, IndexError):  # best effort
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):  # best effort
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(kb / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory_gb": mem_gb,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "espeak_ng": _first_line(["espeak-ng", "--version"]),
        "git_commit": _first_line(["git", "-C", str(PROJECT), "rev-parse", "HEAD"]),
        "git_dirty": bool(_first_line(["git", "-C", str(PROJECT), "status", "--porcelain"])),
    }


def write_json(
    path: Path,
    figures: dict[str, Any],
    run: dict[str, Any],
    records: Sequence[CallRecord],
    machine_before: dict[str, Any],
) -> None:
    body = {
        "bench": "quality",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "run": run,
        "figures": figures,
    }
    # The figures indented, then one line per call: readable, and diffs stay call by call.
    head = json.dumps(body, indent=1, ensure_ascii=False).rstrip().removesuffix("}").rstrip()
    calls = ",\n".join(f"  {json.dumps(asdict(r), ensure_ascii=False)}" for r in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{head},\n "calls": [\n{calls}\n ]\n}}\n')


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""
