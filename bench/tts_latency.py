"""TTS worker latency: say published -> first audio.out message received.

Starts its own nats-server and a loopback OpenAI speech server, runs a TtsWorker, and prints:
the phrase-cache generation (what `voicebot cache` prints, with the offline voice), the
first-frame latency of cached phrases, and of dynamic text with a set provider delay.

    .venv/bin/python bench/tts_latency.py [--phrases 200] [--texts 40] [--delay-ms 150]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from loopback.openai_speech import OpenAISpeechServer, SpeechScript

from events import schemas, subjects
from events.audio import parse_out
from events.bus import Bus
from events.streams import ensure_streams
from tts_worker import phrase_cache
from tts_worker.config import TtsConfig
from tts_worker.providers.espeak import EspeakProvider
from tts_worker.resample import AudioPool
from tts_worker.worker import TtsWorker
from voicebot.servers import NatsServer, free_port


def report(name: str, ms: list[float]) -> None:
    a = np.array(ms)
    print(
        f"{name:<34} n={len(a):<4} p50={np.percentile(a, 50):7.2f} ms  "
        f"p99={np.percentile(a, 99):7.2f} ms  max={a.max():7.2f} ms"
    )


async def cache_timing(tmp: Path) -> None:
    pool = AudioPool()
    await pool.start()
    t0 = time.perf_counter()
    lines = await phrase_cache.generate(tmp / "cache-bench", EspeakProvider(pool))
    total = time.perf_counter() - t0
    await pool.close()
    print("\n".join(lines))
    print(f"{len(lines)} phrases in {total:.2f} s (espeak, {pool.workers} processes)\n")


async def run(args: argparse.Namespace, tmp: Path) -> None:
    await cache_timing(tmp)
    server = NatsServer(store_dir=tmp / "nats", port=free_port())
    server.start()
    speech = OpenAISpeechServer(api_key="bench-key")
    speech.script = SpeechScript(duration_s=1.5, delay_s=args.delay_ms / 1000)
    await speech.start()
    bus = await Bus.connect(server.url, "bench")
    await ensure_streams(bus.js)
    config = TtsConfig.from_env(
        {
            "TTS_PROVIDER": "openai",
            "OPENAI_API_KEY": "bench-key",
            "OPENAI_BASE_URL": speech.base_url,
            "CACHE_DIR": str(tmp / "cache"),
            "AUDIO_OUT_BATCH_MS": str(args.batch_ms),
            "TTS_TIMEOUT_S": "5",
        }
    )
    worker = TtsWorker(config, bus)
    await worker.start()
    try:
        call_id = subjects.new_call_id()
        first: dict[str, float] = {}
        done: dict[str, asyncio.Event] = {}

        async def on_audio(msg: object) -> None:
            out = parse_out(msg.headers, msg.data)  # type: ignore[attr-defined]
            first.setdefault(out.utterance_id, time.perf_counter())
            if out.last:
                done[out.utterance_id].set()

        await bus.nc.subscribe(subjects.audio_out(call_id), cb=on_audio)
        await bus.publish(
            subjects.event(call_id, "started"), schemas.Started(call_id=call_id, ts=time.time())
        )

        async def one(uid: str, phrase: str | None = None, text: str | None = None) -> float:
            done[uid] = asyncio.Event()
            t0 = time.perf_counter()
            say = schemas.Say(
                call_id=call_id, ts=time.time(), utterance_id=uid, phrase=phrase, text=text
            )
            await bus.publish(subjects.say(call_id), say)
            async with asyncio.timeout(30):
                await done[uid].wait()
            return (first[uid] - t0) * 1000

        await one("warm-up", phrase="ok")
        keys = list(worker.phrases)
        cached = [await one(f"p{i}", phrase=keys[i % len(keys)]) for i in range(args.phrases)]
        dynamic = [
            await one(f"t{i}", text=f"Votre ticket {1000 + i} est bien enregistré.")
            for i in range(args.texts)
        ]
        print(f"audio.out batch {args.batch_ms} ms, {worker.pool_workers} pool processes")
        report("cached phrase first frame", cached)
        report(f"dynamic text first frame ({args.delay_ms} ms TTFB)", dynamic)
        print(f"provider requests: {len(speech.requests)} (all for dynamic text)")
    finally:
        await worker.stop()
        await bus.close()
        await speech.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phrases", type=int, default=200)
    parser.add_argument("--texts", type=int, default=40)
    parser.add_argument("--delay-ms", type=int, default=150)
    parser.add_argument("--batch-ms", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
