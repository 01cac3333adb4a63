"""Connections to the cloud providers across a call: kept warm, or a new handshake per line.

A caller's lines come 5 to 8 s apart (the bot's question, then the answer), and so do the
brain's Groq requests; the TTS worker's OpenAI requests come on synthesised answers. The SDKs'
connection pools drop an idle connection after 5 s, so most requests opened a new one: on the
internet that is a TCP and a TLS handshake, round trips to the service before it even starts.
127.0.0.1 has no such cost, so the loopback servers here charge `--connect-ms` for a
connection's first answer, and the real providers' classes (real SDKs) are timed side by side
with the SDK's 5 s pool and with ours (`KEEPALIVE_S`), the same requests at the same moments.

    .venv/bin/python bench/provider_connections.py [--lines 6] [--gap-s 6] [--connect-ms 150]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from loopback.openai_chat import ChatServer, Request, Step
from loopback.openai_speech import OpenAISpeechServer, SpeechScript

from brain.providers.groq import GroqNlu
from events.kept_connection import KEEPALIVE_S
from tts_worker.providers.openai import OpenAIProvider
from tts_worker.resample import AudioPool

SDK_POOL_S = 5.0  # httpx's keepalive_expiry, which both SDKs leave as it is
AFFIRM = '{"intent": "affirm", "slots": {}, "confidence": 1.0, "reply": null}'


async def lines(n: int, gap_s: float, request: Callable[[], Awaitable[float]]) -> list[float]:
    """`n` requests `gap_s` apart (from the end of one to the start of the next): seconds each."""
    took = []
    for i in range(n):
        if i:
            await asyncio.sleep(gap_s)
        took.append(await request())
    return took


async def groq_run(args: argparse.Namespace, keepalive_s: float) -> dict[str, Any]:
    def answer(_: Request) -> Step:
        return Step(content=AFFIRM, delay_s=args.llm_ms / 1000)

    async with ChatServer(
        responder=answer, keep_alive=True, keep_requests=False, connect_s=args.connect_ms / 1000
    ) as server:
        async with GroqNlu(
            api_key="bench", base_url=server.base_url, timeout_s=5.0, keepalive_s=keepalive_s
        ) as llm:

            async def one() -> float:
                t0 = time.perf_counter()
                await llm.understand("oui", "yes_no", "VERIFICATION")
                return time.perf_counter() - t0

            took = await lines(args.lines, args.gap_s, one)
        return figures("groq", keepalive_s, took, args.llm_ms, server.connections)


async def openai_run(
    args: argparse.Namespace, keepalive_s: float, pool: AudioPool
) -> dict[str, Any]:
    script = SpeechScript(duration_s=1.0, delay_s=args.tts_ms / 1000, pace_s=0.1 / 3)
    async with OpenAISpeechServer(
        api_key="bench", script=script, keep_requests=False, connect_s=args.connect_ms / 1000
    ) as server:
        tts = OpenAIProvider(
            pool, api_key="bench", base_url=server.base_url, keepalive_s=keepalive_s
        )
        try:

            async def one() -> float:
                t0 = time.perf_counter()
                first: float | None = None
                async for _ in tts.speak_native("Débranchez votre box pendant trente secondes."):
                    first = time.perf_counter() - t0 if first is None else first
                assert first is not None
                return first  # to the first audio, the answer read to its end as the worker does

            took = await lines(args.lines, args.gap_s, one)
        finally:
            await tts.close()
        return figures("openai", keepalive_s, took, args.tts_ms, server.connections)


def figures(
    provider: str, keepalive_s: float, took: list[float], delay_ms: float, connections: int
) -> dict[str, Any]:
    over = [t * 1000 - delay_ms for t in took]
    return {
        "provider": provider,
        "keepalive_s": keepalive_s,
        "requests": len(took),
        "connections": connections,
        "over_delay_ms": {
            "p50": round(statistics.median(over), 1),
            "max": round(max(over), 1),
            "each": [round(x, 1) for x in over],
        },
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    pool = AudioPool(1)
    try:
        runs = [groq_run(args, k) for k in (SDK_POOL_S, KEEPALIVE_S)]
        runs += [openai_run(args, k, pool) for k in (SDK_POOL_S, KEEPALIVE_S)]
        return list(await asyncio.gather(*runs))  # side by side: the same moments for all
    finally:
        pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=6, help="requests per run")
    parser.add_argument("--gap-s", type=float, default=6.0, help="between two requests")
    parser.add_argument(
        "--connect-ms", type=float, default=150.0, help="a new connection's cost (handshakes)"
    )
    parser.add_argument("--llm-ms", type=float, default=150.0)
    parser.add_argument("--tts-ms", type=float, default=200.0, help="to the first audio")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    print(
        f"{args.lines} requests {args.gap_s:g} s apart per run, a new connection costing "
        f"{args.connect_ms:g} ms; time over the provider's own delay (LLM {args.llm_ms:g} ms, "
        f"speech {args.tts_ms:g} ms to the first audio)"
    )
    results = asyncio.run(run(args))
    for r in results:
        pool = (
            "SDK pool (5 s)" if r["keepalive_s"] == SDK_POOL_S else f"ours ({r['keepalive_s']:g} s)"
        )
        o = r["over_delay_ms"]
        print(
            f"{r['provider']:<7} {pool:<15} connections {r['connections']} for {r['requests']} "
            f"requests, over the delay p50 {o['p50']:7.1f} / max {o['max']:7.1f} ms  {o['each']}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": None}, "runs": results}, indent=2)
        )


if __name__ == "__main__":
    main()
