"""How soon a worker takes a call: `started` stored -> the claim loop hands it to the worker.

Every call's welcome waits for three claims (brain, STT, TTS worker), so this delay is the
start of every welcome. Two shapes, against a real nats-server and one `CallClaims`:
- calls arriving a few a second (3 runs of `--spaced N` calls `--every` s apart, each after
  an idle while):
  nats-py's batch fetch, once a message came, waits for the batch to fill or its pull to expire,
  which made a third of such calls wait 250-500 ms before `events/claims.py` asked for one at a
  time;
- a burst (`--burst N` calls published at once), which the claim loop still takes in batches.

    .venv/bin/python bench/claim_latency.py [--spaced 12] [--every 0.25] [--burst 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # this checkout's code, whatever the virtualenv has installed

from events import schemas, streams, subjects  # noqa: E402
from events.bus import Bus  # noqa: E402
from events.claims import CallClaims, Claim  # noqa: E402
from voicebot.servers import NatsServer, free_port  # noqa: E402

IDLE_S = (1.5, 1.8, 2.2)


async def _claimed(url: str, publish: list[float], idle_s: float = 1.5) -> list[float]:
    """After `idle_s`, publish one call per wait in `publish` (all 0: together); ms to each
    claim."""
    bus = await Bus.connect(url, "bench-publisher")
    claimer_bus = await Bus.connect(url, "bench-claimer")
    delays: list[float] = []
    all_taken = asyncio.Event()
    service = f"bench{int(time.time() * 1000) % 100_000}"

    async def on_call(claim: Claim) -> None:
        delays.append((time.time() - claim.started.ts) * 1000)
        if len(delays) == len(publish):
            all_taken.set()
        await asyncio.Event().wait()  # held for the whole run, as a call is

    claims = CallClaims(claimer_bus, streams.ClaimConsumer(service=service), on_call)
    task = asyncio.create_task(claims.run())

    async def start() -> None:
        cid = subjects.new_call_id()
        started = schemas.Started(call_id=cid, ts=time.time())
        await bus.publish(subjects.event(cid, "started"), started)

    try:
        await asyncio.sleep(idle_s)  # idle: the claim loop waits in its fetch
        if not any(publish):
            await asyncio.gather(*(start() for _ in publish))
        else:
            for wait in publish:
                await start()
                await asyncio.sleep(wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_taken.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bus.close()
        await claimer_bus.close()
    return delays


def _figures(delays: list[float], calls: int) -> dict[str, float]:
    d = sorted(delays)
    return {
        "calls": calls,
        "claimed": len(d),
        "p50_ms": round(statistics.median(d), 1),
        "max_ms": round(d[-1], 1),
        "over_100_ms": sum(x > 100 for x in d),
    }


async def main(spaced: int, every: float, burst: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(store_dir=Path(tmp) / "nats", port=free_port())
        server.start()
        try:
            setup = await Bus.connect(server.url, "setup")
            await streams.ensure_streams(setup.js)
            await setup.close()
            spaced_delays: list[float] = []
            # Where a call falls in the claim loop's 1 s fetch cycle decides whether it waited:
            # three runs, each after a different idle time.
            for idle_s in IDLE_S:
                spaced_delays += await _claimed(server.url, [every] * spaced, idle_s)
            out = {
                "spaced": _figures(spaced_delays, spaced * len(IDLE_S)),
                "burst": _figures(await _claimed(server.url, [0.0] * burst), burst),
            }
        finally:
            server.stop()
    sp = out["spaced"]
    print(
        f"{len(IDLE_S)} x {spaced} calls {every * 1000:.0f} ms apart: claimed p50 "
        f"{sp['p50_ms']} ms, max {sp['max_ms']} ms, {sp['over_100_ms']} over 100 ms"
    )
    print(
        f"{burst} calls at once: claimed p50 {out['burst']['p50_ms']} ms, "
        f"max {out['burst']['max_ms']} ms"
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaced", type=int, default=12, help="calls per run (3 runs)")
    parser.add_argument("--every", type=float, default=0.25)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = asyncio.run(main(args.spaced, args.every, args.burst))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
