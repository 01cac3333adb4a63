"""End of turn, energy VAD vs Silero VAD with speculative recognition, on the same recordings.

Recordings: tests/fixtures/stt/turns (MBROLA fr1 and fr4, band-limited, lines with pauses
inside: "Pierre Dupont… zéro six, douze, trente-quatre… cinquante-six…", "Euh… internet",
"Mon numéro est le… 06…"), assets/sample_call and the single-answer fixtures of
tests/fixtures/stt, each followed by 2 s of silence. Each is one caller line: more than one
final for it is a cut-off (the line split in two).

Virtual time: the audio is fed window by window; every recognition the turn-taker asks for
really runs (one Whisper process, one caller) and its result is delivered at the stream time
it would have arrived. Latency = final available - true end of the line's speech.

Prints, per variant: cut-off rate, end of speech -> final p50/p95/max, recognitions run and
discarded, VAD cost per 20 ms frame.

    .venv/bin/python bench/stt_turns.py [--json out.json] [--variants energy-600,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stt_worker import answers, model_store
from stt_worker.config import DEFAULT_WHISPER_PROMPT, SttConfig
from stt_worker.providers.whisper_local import WhisperPool
from stt_worker.silero import SileroVad
from stt_worker.turn import Commit, Discard, Speculate, TurnConfig, TurnTaker
from stt_worker.vad import Segmenter, Utterance, VadConfig

ROOT = Path(__file__).resolve().parents[1]
TURNS = ROOT / "tests" / "fixtures" / "stt" / "turns"
FIXTURES = ROOT / "tests" / "fixtures" / "stt"
SAMPLE = ROOT / "assets" / "sample_call"
RATE = 8000
AFTER_S = 2.0

# What the bot asked before each line (the turn-taker reads answers against it).
TURN_EXPECTS = {
    "identity": "identity",
    "number": "identity",
    "problem": "problem",
    "filler": "category",
    "hesitation": "category",
    "backchannel": "yes_no",
    "yes": "yes_no",
    "no": "yes_no",
    "category": "category",
    "solved": "yes_no",
}
SAMPLE_EXPECTS = {"1": "problem", "2": "identity", "3": "category", "4": "ack", "5": "yes_no"}
FIXTURE_EXPECTS = {"oui": "yes_no", "non": "yes_no", "internet": "category", "mobile": "category"}


@dataclass(frozen=True)
class Line:
    name: str
    pcm: bytes
    speech_end: float  # true end of the line's speech, seconds
    expecting: str | None


def read(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        pcm: bytes = w.readframes(w.getnframes())
    return pcm


def last_sound(pcm: bytes) -> float:
    x = np.abs(np.frombuffer(pcm, "<i2").astype(np.int32))
    loud = np.flatnonzero(x > 300)
    return (loud[-1] + 1) / RATE if loud.size else 0.0


def lines() -> list[Line]:
    out = []
    meta = json.loads((TURNS / "turns.json").read_text())
    pad = bytes(int(AFTER_S * RATE) * 2)
    for file, info in meta.items():
        name = file.removesuffix(".wav")
        kind = name.split("-", 2)[2]
        out.append(
            Line(
                f"turns/{name}", read(TURNS / file) + pad, info["speech"][-1][1], TURN_EXPECTS[kind]
            )
        )
    for n, expecting in SAMPLE_EXPECTS.items():
        pcm = read(SAMPLE / f"{n}.wav")
        out.append(Line(f"sample_call/{n}", pcm + pad, last_sound(pcm), expecting))
    for n, expecting in FIXTURE_EXPECTS.items():
        pcm = read(FIXTURES / f"{n}.wav")
        out.append(Line(f"stt/{n}", pcm + pad, last_sound(pcm), expecting))
    return out


@dataclass
class Outcome:
    finals: list[tuple[float, str]] = field(default_factory=list)  # (time available, text)
    recognitions: int = 0
    discarded: int = 0


async def run_energy(line: Line, pool: WhisperPool, silence_ms: int) -> Outcome:
    """The former provider: energy VAD, an utterance after `silence_ms` of silence."""
    seg = Segmenter(VadConfig(min_silence_ms=silence_ms))
    result = Outcome()
    step = 320
    for i in range(0, len(line.pcm), step):
        for s in seg.feed(line.pcm[i : i + step]):
            if isinstance(s, Utterance):
                began = time.perf_counter()
                rec = await pool.recognise(s.pcm, DEFAULT_WHISPER_PROMPT, limit_s=30)
                result.recognitions += 1
                ready = seg.position + time.perf_counter() - began
                result.finals.append((ready, rec.text))
    return result


async def run_silero(
    line: Line, pool: WhisperPool, config: TurnConfig, verbose: bool = False
) -> Outcome:
    vad = SileroVad()
    turns = TurnTaker(vad.probability, vad.window, config)
    result = Outcome()
    pending: dict[int, tuple[float, str]] = {}  # speculation -> (ready at, text)

    async def handle(events: list[Any]) -> None:
        for event in events:
            match event:
                case Speculate():
                    began = time.perf_counter()
                    rec = await pool.recognise(
                        event.pcm, DEFAULT_WHISPER_PROMPT, limit_s=30, expecting=line.expecting
                    )
                    result.recognitions += 1
                    text = rec.text
                    if rec.snapped and verbose:
                        text += f" (free: {rec.free_text})"
                    pending[event.id] = (turns.position + time.perf_counter() - began, text)
                case Discard(id=spec_id):
                    pending.pop(spec_id, None)
                    result.discarded += 1
                case Commit(id=spec_id):
                    ready, text = pending.pop(spec_id)
                    result.finals.append((max(ready, turns.position), text))

    step = vad.window * 2
    for i in range(0, len(line.pcm), step):
        for spec_id, (ready, text) in list(pending.items()):
            if ready <= turns.position and spec_id in pending:
                complete = answers.turn_complete(text.split(" (free: ")[0], line.expecting)
                await handle(turns.heard(spec_id, complete))
        await handle(turns.feed(line.pcm[i : i + step]))
    await handle(turns.flush())
    return result


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")


def vad_cost_us(pcm: bytes) -> dict[str, float]:
    frames = len(pcm) // 320
    seg = Segmenter(VadConfig())
    began = time.perf_counter()
    for i in range(frames):
        seg.feed(pcm[i * 320 : (i + 1) * 320])
    energy = (time.perf_counter() - began) / frames * 1e6
    turns = TurnTaker(SileroVad().probability, 256, TurnConfig())
    began = time.perf_counter()
    for i in range(frames):
        turns.feed(pcm[i * 320 : (i + 1) * 320])
    silero = (time.perf_counter() - began) / frames * 1e6
    return {"energy": energy, "silero": silero}


VARIANTS: dict[str, Any] = {
    "energy-600": ("energy", 600),
    "silero-600": ("silero", TurnConfig(pause_ms=600, end_ms=600)),
    "silero-250": ("silero", TurnConfig(pause_ms=250, end_ms=250)),
    "silero-250+text-800": ("silero", TurnConfig(pause_ms=250, end_ms=800)),
}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    model_dir = model_store.ensure_model(SttConfig().whisper_cache_dir)
    pool = WhisperPool(model_dir, workers=1, threads=1)
    await pool.start()
    report: dict[str, Any] = {"variants": {}}
    recordings = lines()
    try:
        for name in args.variants.split(","):
            kind, setting = VARIANTS[name]
            latencies, cuts, missed, recs, discarded = [], [], 0, 0, 0
            for line in recordings:
                if kind == "energy":
                    out = await run_energy(line, pool, setting)
                else:
                    out = await run_silero(line, pool, setting, args.verbose)
                recs += out.recognitions
                discarded += out.discarded
                if not out.finals:
                    missed += 1
                    continue
                if len(out.finals) > 1:
                    cuts.append(f"{line.name}: {[t for _, t in out.finals]}")
                latencies.append((out.finals[-1][0] - line.speech_end) * 1000)
                if args.verbose:
                    texts = " | ".join(t for _, t in out.finals)
                    print(f"  {name:20} {line.name:24} {latencies[-1]:6.0f} ms  {texts}")
            report["variants"][name] = {
                "lines": len(recordings),
                "cut_off": len(cuts),
                "cut_off_rate": len(cuts) / len(recordings),
                "missed": missed,
                "p50_ms": pct(latencies, 0.5),
                "p95_ms": pct(latencies, 0.95),
                "max_ms": max(latencies, default=float("nan")),
                "recognitions": recs,
                "discarded": discarded,
                "cuts": cuts,
            }
    finally:
        await pool.stop()
    report["vad_us_per_20ms_frame"] = vad_cost_us(b"".join(line.pcm for line in recordings))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    n = next(iter(report["variants"].values()))["lines"]
    print(f"\nend of turn on {n} caller lines (2 voices, band-limited; one Whisper process)")
    head = ("cut-off", "p50 ms", "p95 ms", "max ms", "recog", "wasted")
    print(f"{'variant':22} {head[0]:>9} " + " ".join(f"{h:>7}" for h in head[1:4]), end="")
    print(f" {head[4]:>6} {head[5]:>6}")
    for name, v in report["variants"].items():
        print(
            f"{name:22} {v['cut_off']:3d} ({v['cut_off_rate']:4.0%}) {v['p50_ms']:7.0f} "
            f"{v['p95_ms']:7.0f} {v['max_ms']:7.0f} {v['recognitions']:6d} {v['discarded']:6d}"
        )
        for cut in v["cuts"]:
            print(f"    cut: {cut}")
    cost = report["vad_us_per_20ms_frame"]
    print(
        f"VAD on the event loop per 20 ms frame: energy {cost['energy']:.1f} us, "
        f"Silero + turn-taking {cost['silero']:.1f} us"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
