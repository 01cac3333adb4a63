"""Answers to the closed questions, recognised and understood as the offline default does.

Short answers callers give to "Internet ou mobile ?" and "Est-ce que ça fonctionne ?", not
only the recogniser's own phrasings ("Pas du tout.", "Le wifi.", "Tout à fait."...), each said by
MBROLA fr1 and fr4 at 135 and 175 words per minute, on the telephone band, clean and under the
quality harness's pink and babble noise at 15 dB SNR (quality/synth.py). Each clip goes through
`whisper_local.recognise` with the question's expectation, then the brain's own trust rule
(`brain.worker.trusted`: `STT_MIN_AVG_LOGPROB`, `STT_MIN_CATEGORY_LOGPROB` for a chosen category)
and its rules. An answer is *right* (the intent meant), *asked again* (not trusted, or no answer to
this question: "pardon ?"), or *wrong* (the other answer: a fix for the wrong line, or a "oui"
that ends the call): wrong is the one that must stay near zero.

    .venv/bin/python bench/stt_closed.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from brain.config import BrainConfig
from brain.nlu import understand
from brain.worker import trusted
from events import schemas
from quality import synth
from stt_worker import model_store
from stt_worker.config import DEFAULT_WHISPER_PROMPT, SttConfig
from stt_worker.providers import whisper_local

LINES: dict[str, dict[str, str]] = {
    "category": {
        "Internet.": "internet",
        "Internet, le wifi.": "internet",
        "C'est la box.": "internet",
        "Le wifi.": "internet",
        "Euh… internet.": "internet",
        "Mobile.": "mobile",
        "Mon portable.": "mobile",
        "Le réseau mobile.": "mobile",
    },
    "yes_no": {
        "Oui, ça marche.": "affirm",
        "Oui, c'est bon.": "affirm",
        "Oui, ça remarche.": "affirm",
        "Tout à fait.": "affirm",
        "Absolument.": "affirm",
        "Pas du tout.": "deny",
        "Toujours pas.": "deny",
        "Non, ça ne marche toujours pas.": "deny",
        "Négatif.": "deny",
    },
}
# The intents that answer each question: any other one is asked again by the dialog.
ANSWERS = {"category": {"internet", "mobile"}, "yes_no": {"affirm", "deny"}}
SPEAKERS = [(v, r) for v in ("mb-fr1", "mb-fr4") for r in (135, 175)]
NOISES = (None, "pink", "babble")
PAD = bytes(8000)  # 0.5 s of silence before the line, 1 s after: a turn as the VAD cuts it


def noisy(pcm: bytes, noise: str | None, seed: int) -> bytes:
    if noise is None:
        return pcm
    ambience = synth.Ambience(noise, 15.0, seed)
    speech = np.frombuffer(pcm, "<i2").astype(np.int32)
    frames = [np.frombuffer(ambience(), "<i2") for _ in range(len(speech) // 160 + 1)]
    background = np.concatenate(frames)[: len(speech)].astype(np.int32)
    mixed: bytes = np.clip(speech + background, -32768, 32767).astype("<i2").tobytes()
    return mixed


def final_of(rec: whisper_local.Recognised) -> schemas.Final:
    """The transcript the STT worker publishes for this recognition (what the brain judges)."""
    return schemas.Final(
        call_id="bench",
        ts=0.0,
        text=rec.text,
        avg_logprob=rec.avg_logprob,
        no_speech_prob=rec.no_speech_prob,
        provider=schemas.EXPECTED_ANSWER if rec.snapped else "whisper",
    )


def run() -> list[dict[str, Any]]:
    # In this process, as one inference worker of the pool runs it.
    model_dir = model_store.ensure_model(SttConfig().whisper_cache_dir)
    whisper_local._init_process(str(model_dir), 1, os.getppid())
    cfg = BrainConfig.from_env()
    rows = []
    for expecting, lines in LINES.items():
        for text, meant in lines.items():
            for voice, rate in SPEAKERS:
                for noise in NOISES:
                    line = synth.line_pcm(text, voice, rate)
                    pcm = noisy(PAD + line + 2 * PAD, noise, synth.seed_of(text, voice, str(rate)))
                    began = time.perf_counter()
                    rec = whisper_local.recognise(pcm, DEFAULT_WHISPER_PROMPT, expecting)
                    ms = (time.perf_counter() - began) * 1000
                    ok = trusted(final_of(rec), expecting, cfg)
                    intent = understand(rec.text, expecting).intent if ok else "untrusted"
                    verdict = "right" if intent == meant else "wrong"
                    if intent not in ANSWERS[expecting]:
                        verdict = "asked again"
                    rows.append(
                        {
                            "said": text,
                            "expecting": expecting,
                            "voice": voice,
                            "rate": rate,
                            "noise": noise,
                            "heard": rec.text,
                            "chosen": rec.snapped,
                            "avg_logprob": round(rec.avg_logprob, 3),
                            "intent": intent,
                            "verdict": verdict,
                            "ms": round(ms, 1),
                        }
                    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = run()
    print(f"{'said':34} {'right':>5} {'again':>5} {'wrong':>5}   (of {len(SPEAKERS) * 3})")
    for said in dict.fromkeys(r["said"] for r in rows):
        n = Counter(r["verdict"] for r in rows if r["said"] == said)
        print(f"{said:34} {n['right']:5} {n['asked again']:5} {n['wrong']:5}")
    total = Counter(r["verdict"] for r in rows)
    wrong = [r for r in rows if r["verdict"] == "wrong"]
    ms = sorted(r["ms"] for r in rows)
    summary = {
        "clips": len(rows),
        "right": total["right"],
        "asked_again": total["asked again"],
        "wrong": total["wrong"],
        "recognition_ms_p50": ms[len(ms) // 2],
        "recognition_ms_p95": ms[int(len(ms) * 0.95)],
    }
    print(
        f"\n{len(rows)} answers: right {total['right']}, asked again {total['asked again']}, "
        f"wrong {total['wrong']}; recognition p50 {summary['recognition_ms_p50']:.0f} ms, "
        f"p95 {summary['recognition_ms_p95']:.0f} ms (one thread)"
    )
    for r in wrong:
        print(f"  wrong: {r['said']!r} {r['voice']}@{r['rate']} {r['noise']} -> {r['heard']!r}")
    if args.json:
        report = {"summary": summary, "rows": rows}
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
