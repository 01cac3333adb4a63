"""Recognition of short answers with and without the bot's expectation, offline Whisper.

On tests/fixtures/stt/answers (MBROLA fr1 and fr4, band-limited: "oui", "non", "internet",
"c'est internet", phone numbers...; scripts/make_answer_fixtures.py), each clip is decoded
freely and with the expectation of the question it answers. An answer is right when its
meaning is heard (`stt_worker.answers.meanings`: "oui", "internet"...; all ten digits for a
phone number). Then every yes/no and category clip is decoded under the *other* question's
expectation, with the sample call's lines: a snap there is a wrong answer invented.

    .venv/bin/python bench/stt_answers.py [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from pathlib import Path
from typing import Any

from stt_worker import answers, model_store
from stt_worker.config import DEFAULT_WHISPER_PROMPT, SttConfig
from stt_worker.providers.whisper_local import Recognised, WhisperPool

ROOT = Path(__file__).resolve().parents[1]
ANSWERS = ROOT / "tests" / "fixtures" / "stt" / "answers"
SAMPLE = ROOT / "assets" / "sample_call"
OTHER = {"yes_no": "category", "category": "yes_no"}


def read(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        pcm: bytes = w.readframes(w.getnframes())
    return pcm


def right(rec: Recognised, meaning: str) -> bool:
    if meaning.isdigit():
        return answers.digits(rec.text) == meaning
    return meaning in answers.meanings(rec.text)


async def main_async() -> dict[str, Any]:
    model_dir = model_store.ensure_model(SttConfig().whisper_cache_dir)
    pool = WhisperPool(model_dir, workers=1, threads=1)
    await pool.start()
    meta = json.loads((ANSWERS / "answers.json").read_text())
    rows, probes = [], []
    try:
        for file, info in meta.items():
            pcm = read(ANSWERS / file)
            began = time.perf_counter()
            free = await pool.recognise(pcm, DEFAULT_WHISPER_PROMPT, limit_s=30)
            t_free = time.perf_counter() - began
            began = time.perf_counter()
            exp = await pool.recognise(
                pcm, DEFAULT_WHISPER_PROMPT, limit_s=30, expecting=info["expecting"]
            )
            t_exp = time.perf_counter() - began
            rows.append(
                {
                    "file": file,
                    "expecting": info["expecting"],
                    "free": free.text,
                    "free_right": right(free, info["meaning"]),
                    "expected": exp.text,
                    "snapped": exp.snapped,
                    "expected_right": right(exp, info["meaning"]),
                    "avg_logprob": round(exp.avg_logprob, 3),
                    "free_ms": t_free * 1000,
                    "expected_ms": t_exp * 1000,
                }
            )
            if info["expecting"] in OTHER:
                other = await pool.recognise(
                    pcm, DEFAULT_WHISPER_PROMPT, limit_s=30, expecting=OTHER[info["expecting"]]
                )
                probes.append(
                    {
                        "file": file,
                        "under": OTHER[info["expecting"]],
                        "text": other.text,
                        "snapped": other.snapped,
                        "avg_logprob": round(other.avg_logprob, 3),
                    }
                )
        for n in ("1", "2", "4"):
            for under in ("yes_no", "category"):
                rec = await pool.recognise(
                    read(SAMPLE / f"{n}.wav"), DEFAULT_WHISPER_PROMPT, limit_s=30, expecting=under
                )
                probes.append(
                    {
                        "file": f"sample_call/{n}.wav",
                        "under": under,
                        "text": rec.text,
                        "snapped": rec.snapped,
                        "avg_logprob": round(rec.avg_logprob, 3),
                    }
                )
    finally:
        await pool.stop()
    return {"answers": rows, "probes": probes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = asyncio.run(main_async())
    rows, probes = report["answers"], report["probes"]
    print(f"{'clip':32} {'expecting':9} {'free decoding':34} {'with expectation':30}")
    for r in rows:
        mark = "+" if r["snapped"] else " "
        free_ok = "ok " if r["free_right"] else "BAD"
        exp_ok = "ok " if r["expected_right"] else "BAD"
        print(
            f"{r['file']:32} {r['expecting']:9} {free_ok} {r['free']:30.30} "
            f"{exp_ok}{mark}{r['expected']:30.30} {r['avg_logprob']:6.2f}"
        )
    n = len(rows)
    free_ok = sum(r["free_right"] for r in rows)
    exp_ok = sum(r["expected_right"] for r in rows)
    snaps = sum(r["snapped"] for r in rows)
    wrong_snaps = [p for p in probes if p["snapped"]]
    report["summary"] = {
        "clips": n,
        "free_right": free_ok,
        "expected_right": exp_ok,
        "snapped": snaps,
        "probes": len(probes),
        "wrong_snaps": len(wrong_snaps),
        "free_ms_mean": sum(r["free_ms"] for r in rows) / n,
        "expected_ms_mean": sum(r["expected_ms"] for r in rows) / n,
    }
    s = report["summary"]
    print(
        f"\nright answers: free decoding {free_ok}/{n} ({free_ok / n:.0%}), with the expectation "
        f"{exp_ok}/{n} ({exp_ok / n:.0%}); {snaps} snapped to an expected answer ('+')"
    )
    print(
        f"answers to another question, or whole sentences, snapped anyway: "
        f"{len(wrong_snaps)}/{len(probes)}",
        [(p["file"], p["under"], p["text"], p["avg_logprob"]) for p in wrong_snaps],
    )
    print(
        f"recognition time mean: free {s['free_ms_mean']:.0f} ms, "
        f"with the expectation {s['expected_ms_mean']:.0f} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
