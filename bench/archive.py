"""How fast does `voicebot archive` turn calls into MP3s, per encoding process?

Builds synthetic calls the shape of real ones (the caller's recorded sample lines on one
side, the same voice on the other, taking turns with pauses; 20 ms caller messages, 100 ms
bot messages, playback reports) and runs the archive's pool job on them (`mp3.archive_call`:
both tracks on the call's clock, stereo MP3 encode, decode-back check, sha256, rename) in a
spawn process pool of 1 and of 2 workers, as `voicebot archive --workers N` does. Prints
call-minutes archived per second of wall time, and per worker, beside real time (1x).
Reading AUDIO from NATS is not included (network and server bound, not per worker).

    .venv/bin/python bench/archive.py [--calls 12] [--minutes 3] [--workers 1,2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from archiver import mp3
from archiver.timeline import CallAudio, InChunk, OutChunk, Played, stereo
from events.audio import FRAME_BYTES

PROJECT = Path(__file__).resolve().parent.parent
GOAL_X = 300  # real time, per worker
T0 = 1_700_000_000.0


def lines() -> list[bytes]:
    out = []
    for path in sorted((PROJECT / "assets" / "sample_call").glob("*.wav")):
        with wave.open(str(path), "rb") as w:
            data = w.readframes(w.getnframes())
        out.append(data[: len(data) // FRAME_BYTES * FRAME_BYTES])
    return out


def synthetic_call(n: int, minutes: float, voice: list[bytes]) -> CallAudio:
    """Turns of speech, caller then bot, with 0.8 s pauses, for `minutes`."""
    caller: list[InChunk] = []
    bot: list[OutChunk] = []
    played: list[Played] = []
    t = 0.5
    audio_t = 0.0
    seq = 0
    turn = 0
    end = minutes * 60
    while t < end - 6:
        pcm = voice[(n + turn) % len(voice)]
        seconds = len(pcm) / 16000
        if turn % 2 == 0:
            for i in range(0, len(pcm), FRAME_BYTES):
                caller.append(InChunk(seq, T0 + t + i / 16000, audio_t, pcm[i : i + FRAME_BYTES]))
                seq += 1
                audio_t += 0.02
        else:
            u = f"u{turn}"
            step = 5 * FRAME_BYTES
            bot += [
                OutChunk(u, k, pcm[i : i + step]) for k, i in enumerate(range(0, len(pcm), step))
            ]
            played.append(Played(u, T0 + t, len(pcm) // FRAME_BYTES))
        t += seconds + 0.8
        turn += 1
    return CallAudio(f"bench-{n}", T0, end, caller, bot, played)


def run(calls: list[CallAudio], workers: int, out_dir: Path) -> tuple[float, float]:
    """Wall seconds to archive `calls` with a warm pool of `workers` processes, and the CPU
    seconds the pool processes spent on them."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        warm = CallAudio("warm", T0, 1.0)
        list(pool.map(mp3.archive_call, [mp3.Job(warm, out_dir / "warm.mp3", 64_000)] * workers))
        t0 = time.perf_counter()
        jobs = [mp3.Job(c, out_dir / f"{workers}" / f"{c.call_id}.mp3", 64_000) for c in calls]
        results = list(pool.map(mp3.archive_call, jobs))
        elapsed = time.perf_counter() - t0
    failed = [r.error for r in results if not r.verified]
    if failed:
        raise SystemExit(f"archive failed: {failed[:3]}")
    return elapsed, sum(r.cpu_s for r in results)


def stages(call: CallAudio, out_dir: Path) -> dict[str, float]:
    """Where one call's time goes, in this process (seconds)."""
    t0 = time.perf_counter()
    left, right, _ = stereo(call)
    t1 = time.perf_counter()
    path = out_dir / "stages.mp3"
    mp3.encode(left, right, path, 64_000)
    t2 = time.perf_counter()
    mp3.verify(path, call.duration_s)
    mp3.sha256(path)
    t3 = time.perf_counter()
    return {"timeline": t1 - t0, "encode": t2 - t1, "verify_sha256": t3 - t2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    voice = lines()
    calls = [synthetic_call(n, args.minutes, voice) for n in range(args.calls)]
    call_minutes = sum(c.duration_s for c in calls) / 60
    figures: dict[str, object] = {"calls": args.calls, "call_minutes": call_minutes}
    print(f"{args.calls} calls of {args.minutes:g} min ({call_minutes:.0f} call-minutes), 64 kb/s")
    with tempfile.TemporaryDirectory() as tmp:
        split = stages(calls[0], Path(tmp))
        per_min = {k: round(v / (calls[0].duration_s / 60) * 1000, 1) for k, v in split.items()}
        print(f"one call, ms per call-minute: {per_min}")
        figures["ms_per_call_minute"] = per_min
        print(
            f"{'workers':>8} {'wall s':>7} {'call-min/s':>10} {'x real time':>11} "
            f"{'per worker':>10} {'per CPU-s':>9}   (real time: 1x; goal {GOAL_X}x per worker)"
        )
        for workers in (int(w) for w in args.workers.split(",")):
            elapsed, cpu = run(calls, workers, Path(tmp))
            rate = call_minutes / elapsed
            x = rate * 60
            per_worker = x / workers
            per_cpu = call_minutes * 60 / cpu  # what one worker does with a core to itself
            figures[f"workers_{workers}"] = {
                "wall_s": round(elapsed, 2),
                "cpu_s": round(cpu, 2),
                "call_minutes_per_s": round(rate, 2),
                "x_real_time": round(x),
                "x_real_time_per_worker": round(per_worker),
                "x_real_time_per_cpu_second": round(per_cpu),
            }
            print(
                f"{workers:>8} {elapsed:>7.2f} {rate:>10.2f} {x:>10.0f}x {per_worker:>9.0f}x "
                f"{per_cpu:>8.0f}x"
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
