"""Can the CALLS stream afford `sync_interval: always` (fsync before every ack)?

Publishes control-plane events the way the services do (JetStream publish, wait for the ack)
from N concurrent "calls" at a target rate, against a nats-server started with the project's
nats.conf (sync always) and with the same config minus that line (NATS' default: fsync every
2 minutes). Prints ack latency p50/p99 and the rate achieved.

    .venv/bin/python -m bench.nats_sync [--calls 200] [--rate 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from events import schemas, subjects
from events.bus import Bus
from events.streams import ensure_streams
from voicebot.servers import NatsServer, free_port

PROJECT = Path(__file__).resolve().parent.parent


def _config(tmp: Path, sync_always: bool) -> Path:
    text = (PROJECT / "nats.conf").read_text()
    # Its users (nats-auth.conf, passwords from the environment) are not what is measured, and
    # the include is relative to nats.conf's folder: the JetStream settings alone are copied.
    include = 'include "nats-auth.conf"'
    if include not in text:
        raise SystemExit(f"nats.conf no longer has {include!r}: update bench/nats_sync.py")
    text = text.replace(include, "# (nats-auth.conf left out: no users in this bench)")
    if not sync_always:
        text = text.replace("sync_interval: always", "# sync_interval: default (2 min)")
    path = tmp / ("always.conf" if sync_always else "default.conf")
    path.write_text(text)
    return path


async def _run(url: str, calls: int, rate: float, seconds: float) -> dict[str, float]:
    bus = await Bus.connect(url, "bench")
    await ensure_streams(bus.js)
    latencies: list[float] = []

    async def one_call() -> None:
        cid = subjects.new_call_id()
        period = 1 / rate
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            event = schemas.PlaybackStarted(call_id=cid, ts=time.time(), utterance_id=f"u{n}")
            t0 = time.perf_counter()
            await bus.publish(subjects.playback(cid), event, msg_id=f"{cid}:{n}")
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(max(0.0, period - (time.perf_counter() - t0)))

    t0 = time.monotonic()
    await asyncio.gather(*(one_call() for _ in range(calls)))
    elapsed = time.monotonic() - t0
    await bus.close()
    latencies.sort()
    return {
        "events": len(latencies),
        "rate_per_s": round(len(latencies) / elapsed, 1),
        "target_per_s": calls * rate,
        "ack_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "ack_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "ack_max_ms": round(latencies[-1] * 1000, 2),
    }


async def main(calls: int, rate: float, seconds: float) -> dict[str, dict[str, float]]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sync_always in (True, False):
            conf = _config(Path(tmp), sync_always)
            store = Path(tmp) / f"store-{sync_always}"
            server = NatsServer(store_dir=store, port=free_port(), config=conf)
            server.start()
            try:
                name = "sync_always" if sync_always else "sync_default"
                results[name] = await _run(server.url, calls, rate, seconds)
            finally:
                server.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="events per second per call")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    out = asyncio.run(main(args.calls, args.rate, args.seconds))
    print(f"CALLS stream, {args.calls} calls x {args.rate:g} events/s for {args.seconds:g} s:")
    for name, r in out.items():
        print(
            f"  {name:13s} {r['rate_per_s']:8.1f}/s of {r['target_per_s']:.0f}  "
            f"ack p50 {r['ack_p50_ms']} ms  p99 {r['ack_p99_ms']} ms  max {r['ack_max_ms']} ms"
        )
    print(json.dumps(out))
