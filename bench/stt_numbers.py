"""French phone numbers through the offline recogniser, read back by the brain's own parser.

Lines are synthesised as the quality harness does (quality/synth.py: its two voices at its two
rates, the telephone band, clean and under pink or babble noise at 15 dB SNR): four numbers,
each said in pairs in words ("zéro six, douze, …"), digit by digit ("zéro, six, un, …"), as
digits in the text (espeak reads "06 12 34 56 78." its own way) and after a name ("Pierre
Dupont, zéro six, douze, …"). Every clip is recognised in this process (`recognise`, as a pool
worker runs it) under the two questions that ask for a number: "identity" (name and number)
and "phone". The number is what `brain.nlu.rules.understand` puts in the phone slot:
exact, near (within the two digit edits the brain forgives when it looks a customer up,
brain/store.py) or far (a wrong number the bot reads back and the caller must refuse). Digit
edits compare the truth with that number or, when the slot stays empty, with the digits the
brain's number reader finds. Answers without a number (a name alone, "je voudrais parler à
un conseiller"...) are recognised too: a number made up from one of those is counted.

    .venv/bin/python -m bench stt_numbers
    .venv/bin/python bench/stt_numbers.py [--prompt TEXT] [--limit N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # this checkout's code, whatever the virtualenv has installed

from brain.identify import NUMBER_ALONE_EDITS  # noqa: E402
from brain.nlu.numbers_fr import to_digits  # noqa: E402
from brain.nlu.rules import understand  # noqa: E402
from brain.phone import digit_edits  # noqa: E402
from events.audio import SAMPLE_RATE  # noqa: E402
from quality import synth  # noqa: E402
from quality.numbers_fr import say_digits, say_pairs  # noqa: E402
from stt_worker import model_store  # noqa: E402
from stt_worker.config import DEFAULT_WHISPER_PROMPT, SttConfig  # noqa: E402
from stt_worker.providers import whisper_local  # noqa: E402

NUMBERS = ("0612345678", "0698765432", "0755443322", "0145678912")
NAMES = ("Pierre Dupont", "Marie Martin")
FORMS = ("pairs", "digits", "as_text", "with_name")
# Answers to the same questions that hold no number: a recogniser keen on numbers must not
# make one up from them.
NO_NUMBER = (
    "Pierre Dupont.",
    "Je ne connais pas mon numéro par cœur.",
    "Je voudrais parler à un conseiller.",
    "Pardon, vous pouvez répéter ?",
)
EXPECTING = ("identity", "phone")
PAD_S = 0.3  # silence around a line, as Silero's cut leaves some


@dataclass(frozen=True)
class Clip:
    number: str
    form: str
    text: str
    condition: synth.Condition


def line_text(number: str, form: str, index: int) -> str:
    match form:
        case "pairs":
            return say_pairs(number) + "."
        case "digits":
            return say_digits(number) + "."
        case "as_text":
            return " ".join(number[i : i + 2] for i in range(0, 10, 2)) + "."
        case "with_name":
            return f"{NAMES[index % len(NAMES)]}, {say_pairs(number)}."
    raise ValueError(form)


def clips() -> list[Clip]:
    conditions = synth.conditions(synth.voices())
    numbers = [
        Clip(number, form, line_text(number, form, i), cond)
        for i, number in enumerate(NUMBERS)
        for form in FORMS
        for cond in conditions
    ]
    others = [Clip("", "no_number", text, cond) for text in NO_NUMBER for cond in conditions]
    return numbers + others


def render(clip: Clip) -> bytes:
    """The line as the recogniser gets it: 8 kHz s16le, under the call's background if any."""
    line = np.frombuffer(
        synth.line_pcm(clip.text, clip.condition.voice, clip.condition.rate), "<i2"
    )
    pad = np.zeros(int(PAD_S * SAMPLE_RATE), np.int32)
    x = np.concatenate([pad, line.astype(np.int32), pad])
    background = synth.ambience(clip.condition, synth.seed_of(clip.text, clip.condition.label))
    if background is not None:
        noise = np.frombuffer(background.pcm, "<i2").astype(np.int32)
        x += np.resize(noise, len(x))
    return bytes(np.clip(x, -32768, 32767).astype("<i2").tobytes())


def heard_number(text: str, expecting: str) -> tuple[str | None, str]:
    """The phone slot the brain fills from `text`, and the digits to compare with the truth."""
    phone = understand(text, expecting).slots.get("phone")
    return phone, phone if phone else to_digits(text)


def measure(prompt: str, limit: int | None) -> list[dict[str, Any]]:
    model_dir = model_store.ensure_model(SttConfig().whisper_cache_dir)
    # The pool's initializer, run here: its watchdog ends a process whose parent changes, so
    # it is given this process's parent (os.getpid() would end the bench within a second).
    whisper_local._init_process(str(model_dir), 1, os.getppid())
    rows = []
    chosen = clips()[:limit]
    for n, clip in enumerate(chosen, 1):
        pcm = render(clip)
        for expecting in EXPECTING:
            rec = whisper_local.recognise(pcm, prompt, expecting)
            phone, digits = heard_number(rec.text, expecting)
            rows.append(
                {
                    "number": clip.number,
                    "form": clip.form,
                    "said": clip.text,
                    "condition": clip.condition.label,
                    "noise": clip.condition.noise or "clean",
                    "expecting": expecting,
                    "heard": rec.text,
                    "free_text": rec.free_text,
                    "snapped": rec.snapped,
                    "avg_logprob": rec.avg_logprob,
                    "phone": phone,
                    "exact": phone == (clip.number or None),
                    "digit_edits": digit_edits(clip.number, digits),
                    "seconds": rec.seconds,
                    "audio_s": len(pcm) / 2 / SAMPLE_RATE,
                }
            )
        if n % 16 == 0:
            print(f"  {n}/{len(chosen)} clips", flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    times = sorted(r["seconds"] for r in rows)
    near = sum(bool(r["phone"]) and r["digit_edits"] <= NUMBER_ALONE_EDITS for r in rows)
    return {
        "recognitions": len(rows),
        "exact_rate": sum(r["exact"] for r in rows) / len(rows),
        # A number the brain can match to a customer's without the name (brain/identify.py)...
        "near_rate": near / len(rows),
        # ...and one too far off: read back to the caller, who must say no.
        "far_rate": sum(bool(r["phone"]) for r in rows) / len(rows) - near / len(rows),
        "mean_digit_edits": statistics.fmean(r["digit_edits"] for r in rows),
        "p50_s": times[len(times) // 2],
        "p95_s": times[min(len(times) - 1, int(0.95 * len(times)))],
    }


def by(rows: list[dict[str, Any]], *keys: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups["/".join(str(r[k]) for k in keys)].append(r)
    return {name: summarise(group) for name, group in groups.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default=DEFAULT_WHISPER_PROMPT)
    parser.add_argument("--limit", type=int, help="only the first N clips (a quick look)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    began = time.monotonic()
    rows = measure(args.prompt, args.limit)
    numbers = [r for r in rows if r["number"]]
    invented = [r for r in rows if not r["number"] and r["phone"]]
    table = {
        "form/expecting": by(numbers, "form", "expecting"),
        "noise": by(numbers, "noise"),
        "all": summarise(numbers),
    }
    print(
        f"\nprompt: {args.prompt!r}; {len(rows)} recognitions in {time.monotonic() - began:.0f} s"
    )
    print(
        f"{'variant':20} {'n':>4} {'exact':>6} {'near':>5} {'far':>5} {'edits':>6} "
        f"{'p50 s':>6} {'p95 s':>6}"
    )
    for section in table.values():
        groups = section if "recognitions" not in section else {"all": section}
        for name, s in groups.items():
            print(
                f"{name:20} {s['recognitions']:4} {s['exact_rate']:6.0%} {s['near_rate']:5.0%} "
                f"{s['far_rate']:5.0%} {s['mean_digit_edits']:6.2f} {s['p50_s']:6.2f} "
                f"{s['p95_s']:6.2f}"
            )
    others = len(rows) - len(numbers)
    print(f"numbers made up from answers without one: {len(invented)}/{others}")
    for r in invented:
        print(f"  {r['condition']:22} {r['expecting']:8} {r['said']!r} -> {r['heard']!r}")
    misses = [r for r in numbers if not r["exact"]]
    print(f"\nsome misses ({len(misses)} in all):")
    for r in misses[:: max(1, len(misses) // 12)][:12]:
        print(f"  {r['condition']:22} {r['expecting']:8} {r['said'][:40]!r:44} -> {r['heard']!r}")
    if args.json:
        summary = {**table, "invented": {"clips": others, "numbers": len(invented)}}
        report = {"prompt": args.prompt, "summary": summary, "rows": rows}
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
