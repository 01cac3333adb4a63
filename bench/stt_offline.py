"""Offline STT bench: Whisper base (CTranslate2 int8, 10 s window) behind the energy VAD.

Prints, for the checked-in fixtures (MBROLA French, 8 kHz):
- recognition time per utterance p50/p95 and real-time factor (one process, one thread);
- resident memory of the main process and of each inference process;
- VAD cost per 20 ms frame on the event loop;
- simulated callers talking in real time (an utterance, 1.5 s of silence, again) through the
  provider: end-of-speech -> final latency p50/p95 (it includes the VAD's 600 ms of silence
  before an utterance is closed) and the recognition part alone (queue + inference), for a
  growing number of callers until the p95 passes 1 s, per pool size.

    .venv/bin/python bench/stt_offline.py [--seconds 12] [--pools 1,2] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from stt_worker import model_store
from stt_worker.config import DEFAULT_WHISPER_PROMPT, SttConfig
from stt_worker.providers.whisper_local import Recognised, WhisperLocalStt, WhisperPool
from stt_worker.turn import TurnConfig
from stt_worker.vad import Segmenter, VadConfig

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "stt"
FRAME = 320  # 20 ms
PAUSE_S = 1.5


def fixtures() -> dict[str, bytes]:
    out = {}
    for path in sorted(FIXTURES.glob("*.wav")):
        with wave.open(str(path)) as w:
            out[path.stem] = w.readframes(w.getnframes())
    return out


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children_rss() -> list[float]:
    import multiprocessing

    return [rss_mb(p.pid) for p in multiprocessing.active_children() if p.pid]


class TimedPool(WhisperPool):
    """Records queue + inference time of every recognition."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: list[float] = []

    async def recognise(
        self, pcm: bytes, prompt: str, *, limit_s: float, expecting: str | None = None
    ) -> Recognised:
        began = time.perf_counter()
        try:
            return await super().recognise(pcm, prompt, limit_s=limit_s, expecting=expecting)
        finally:
            self.waits.append(time.perf_counter() - began)


async def single_utterances(
    pool: WhisperPool, clips: dict[str, bytes], reps: int
) -> dict[str, Any]:
    times, rtfs = [], []
    for _ in range(reps):
        for pcm in clips.values():
            began = time.perf_counter()
            await pool.recognise(pcm, DEFAULT_WHISPER_PROMPT, limit_s=30)
            dt = time.perf_counter() - began
            times.append(dt)
            rtfs.append(dt / (len(pcm) / 2 / 8000))
    return {
        "utterances": len(times),
        "p50_s": pct(times, 0.5),
        "p95_s": pct(times, 0.95),
        "rtf_mean": statistics.fmean(rtfs),
    }


def vad_cost_us(clips: dict[str, bytes]) -> float:
    pcm = b"".join(clip + bytes(16000) for clip in clips.values()) * 20
    seg = Segmenter(VadConfig())
    began = time.perf_counter()
    for i in range(0, len(pcm), FRAME):
        seg.feed(pcm[i : i + FRAME])
    return (time.perf_counter() - began) / (len(pcm) / FRAME) * 1e6


async def caller(
    provider: WhisperLocalStt, clips: list[bytes], seconds: float, t0: float, latencies: list[float]
) -> None:
    rng = random.Random(id(clips) ^ int(t0))
    script = bytes(2 * int(8000 * rng.uniform(0.0, 2.0)))
    while len(script) < seconds * 16000:
        script += rng.choice(clips) + bytes(int(2 * 8000 * PAUSE_S))

    async def audio() -> AsyncIterator[bytes]:
        for i in range(0, len(script), FRAME):
            delay = t0 + i / 16000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield script[i : i + FRAME]

    async for heard in provider.stream(audio()):
        if heard.kind == "final":
            latencies.append(time.monotonic() - (t0 + heard.end))


async def load_level(
    pool: TimedPool, clips: list[bytes], callers: int, seconds: float
) -> dict[str, Any]:
    cfg = SttConfig()
    turn = TurnConfig(  # as the STT worker builds it (stt_worker/worker.py)
        min_speech_ms=cfg.vad_min_speech_ms,
        pause_ms=cfg.vad_pause_ms,
        end_ms=cfg.vad_min_silence_ms,
        max_utterance_ms=cfg.vad_max_utterance_ms,
    )
    provider = WhisperLocalStt(pool, turn=turn, prompt=DEFAULT_WHISPER_PROMPT, timeout_s=60)
    latencies: list[float] = []
    pool.waits.clear()
    t0 = time.monotonic() + 0.2
    cpu0 = time.process_time()
    await asyncio.gather(*(caller(provider, clips, seconds, t0, latencies) for _ in range(callers)))
    loop_cpu = (time.process_time() - cpu0) / (time.monotonic() - t0)
    return {
        "callers": callers,
        "finals": len(latencies),
        "latency_p50_s": pct(latencies, 0.5),
        "latency_p95_s": pct(latencies, 0.95),
        "recognition_p50_s": pct(pool.waits, 0.5),
        "recognition_p95_s": pct(pool.waits, 0.95),
        "event_loop_cpu": loop_cpu,
    }


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=12.0, help="talk time per load level")
    ap.add_argument("--pools", default="1,2", help="pool sizes to load")
    ap.add_argument("--levels", default="1,2,3,4,6,8,10,12,16")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    clips = fixtures()
    model_dir = model_store.ensure_model(SttConfig().whisper_cache_dir)
    report: dict[str, Any] = {"cpus": os.cpu_count()}

    pool = TimedPool(model_dir, workers=1, threads=1)
    await pool.start()
    single = await single_utterances(pool, clips, reps=5)
    report["single"] = single
    report["rss_mb"] = {"main": rss_mb(os.getpid()), "inference_processes": children_rss()}
    await pool.stop()
    report["vad_us_per_frame"] = vad_cost_us(clips)
    print(
        f"recognition, 1 process x 1 thread, {single['utterances']} utterances: "
        f"p50 {single['p50_s'] * 1000:.0f} ms, p95 {single['p95_s'] * 1000:.0f} ms, "
        f"RTF {single['rtf_mean']:.3f}"
    )
    print(
        f"resident memory: main {report['rss_mb']['main']:.0f} MB, inference process(es) "
        + ", ".join(f"{m:.0f} MB" for m in report["rss_mb"]["inference_processes"])
    )
    print(f"VAD on the event loop: {report['vad_us_per_frame']:.1f} us per 20 ms frame")

    report["load"] = {}
    for workers in (int(x) for x in args.pools.split(",")):
        pool = TimedPool(model_dir, workers=workers, threads=1)
        await pool.start()
        rows = []
        held = 0
        print(
            f"\nSTT_WORKERS={workers}: callers talking in real time ({args.seconds:.0f} s each, "
            f"utterance then {PAUSE_S} s pause)"
        )
        print("callers finals  e2e p50  e2e p95  recog p50  recog p95  loop CPU")
        for n in (int(x) for x in args.levels.split(",")):
            row = await load_level(pool, list(clips.values()), n, args.seconds)
            rows.append(row)
            print(
                f"{n:7d} {row['finals']:6d} {row['latency_p50_s']:8.2f} "
                f"{row['latency_p95_s']:8.2f} {row['recognition_p50_s']:10.2f} "
                f"{row['recognition_p95_s']:10.2f} {row['event_loop_cpu']:8.1%}"
            )
            if row["recognition_p95_s"] <= 1.0:
                held = n
            if row["latency_p95_s"] > 2.5:
                break
        await pool.stop()
        report["load"][workers] = {"rows": rows, "callers_recognition_p95_under_1s": held}
        print(
            f"-> STT_WORKERS={workers} holds {held} talking callers with recognition p95 <= 1 s "
            f"(end-to-end adds the VAD's {SttConfig().vad_min_silence_ms} ms of silence)"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
