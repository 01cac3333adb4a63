"""CPU per call and added send latency of the Deepgram provider at N concurrent calls.

The loopback Deepgram server runs in a child process so its CPU is not counted. Each call streams
real-time 20 ms chunks of audio; the loopback answers with a scripted utterance every 2 s
(SpeechStarted, two interims, a final, UtteranceEnd). Measured in this process:
  - CPU seconds per call-second of audio, with the cost of the paced feeders alone (same run,
    no provider) subtracted;
  - latency from a chunk handed to the provider to its bytes written on the socket.

    .venv/bin/python bench/stt_deepgram.py [--calls 100] [--seconds 10] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

KEY = "bench-key"
CHUNK = 320


@dataclass(frozen=True, kw_only=True)
class Settings:
    deepgram_url: str
    deepgram_api_key: str = KEY
    deepgram_model: str = "nova-3"
    deepgram_language: str = "fr"
    deepgram_endpointing_ms: int = 300
    deepgram_utterance_end_ms: int = 1000
    api_timeout_s: float = 5.0


def script(seconds: float) -> list[object]:
    from loopback.deepgram_live import Cue, SpeechStarted, Transcript, UtteranceEnd

    cues: list[object] = []
    for k in range(int(seconds // 2)):
        t = 2.0 * k
        cues += [
            Cue(t + 0.2, SpeechStarted(t + 0.1)),
            Cue(t + 0.7, Transcript("je voudrais", t + 0.1, t + 0.6, is_final=False)),
            Cue(t + 1.2, Transcript("je voudrais parler", t + 0.1, t + 1.1, is_final=False)),
            Cue(t + 1.5, Transcript("Parler à un conseiller.", t, t + 1.4, speech_final=True)),
            Cue(t + 1.95, UtteranceEnd(t + 1.4)),
        ]
    return cues


async def serve(seconds: float) -> None:
    from loopback.deepgram_live import DeepgramLoopback

    async with DeepgramLoopback(api_key=KEY, scripts=[script(seconds)]) as dg:
        print(dg.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def paced(seconds: float, start: float) -> AsyncIterator[bytes]:
    chunk = bytes(CHUNK)
    for i in range(round(seconds * 50)):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield chunk


async def feeders_only(calls: int, seconds: float) -> float:
    async def drain(start: float) -> None:
        async for _ in paced(seconds, start):
            pass

    cpu = time.process_time()
    t0 = time.monotonic() + 0.1
    await asyncio.gather(*(drain(t0 + (i % 50) * 0.0004) for i in range(calls)))
    return time.process_time() - cpu


async def with_provider(url: str, calls: int, seconds: float) -> tuple[float, list[float], int]:
    from stt_worker.providers.deepgram import DeepgramStt

    latencies: list[float] = []
    stt = DeepgramStt(Settings(deepgram_url=url), on_send_latency=latencies.append)
    finals = 0

    async def call(start: float) -> None:
        nonlocal finals
        async for heard in stt.stream(paced(seconds, start), call_id=f"bench-{start:.4f}"):
            finals += heard.kind == "final"

    cpu = time.process_time()
    t0 = time.monotonic() + 0.5
    await asyncio.gather(*(call(t0 + (i % 50) * 0.0004) for i in range(calls)))
    return time.process_time() - cpu, latencies, finals


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[round(q * 10) - 1] if len(values) > 1 else 0.0


async def main(calls: int, seconds: float) -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        "--seconds",
        str(seconds),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        url = (await asyncio.wait_for(server.stdout.readline(), 10)).decode().strip()
        baseline = await feeders_only(calls, seconds)
        cpu, latencies, finals = await with_provider(url, calls, seconds)
    finally:
        server.stdin.close()  # the server exits when its stdin closes
        await asyncio.wait_for(server.wait(), 10)
    provider_cpu = cpu - baseline
    call_seconds = calls * seconds
    ms = [x * 1000 for x in latencies]
    figures = {
        "calls": calls,
        "audio_seconds_per_call": seconds,
        "finals_received": finals,
        "cpu_s_total_with_provider": round(cpu, 3),
        "cpu_s_feeders_only": round(baseline, 3),
        "provider_cpu_percent_of_one_core_per_call": round(100 * provider_cpu / call_seconds, 3),
        "provider_cpu_ms_per_call_second": round(1000 * provider_cpu / call_seconds, 3),
        "send_latency_ms": {
            "samples": len(ms),
            "p50": round(statistics.median(ms), 3),
            "p95": round(pct(ms, 95), 3),
            "p99": round(pct(ms, 99), 3),
            "max": round(max(ms), 3),
        },
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--uvloop", action="store_true", help="run the provider on uvloop")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.seconds))
    elif args.uvloop:
        import uvloop

        uvloop.run(main(args.calls, args.seconds))
    else:
        asyncio.run(main(args.calls, args.seconds))
