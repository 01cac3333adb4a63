"""Failover time of each worker kind: kill -9 the owner of a live call, again and again.

The whole system in its production shape (every instance its own process, two of each worker,
a single NATS node, PostgreSQL; STT through the Deepgram SDK against the keyed loopback, text
through the OpenAI SDK against the speech loopback), the caller of tests/faults on the line.
For each worker kind, one call per five kills: halfway through each caller line, the kind's
current owner of the call gets SIGKILL (the supervisor restarts it; the next kill waits until
two instances are ready again). Per kill:

  claim   kill -> the new owner's `event.claimed`
  heard   kill -> the caller hears the bot again (any voiced frame: the edge's hold phrase counts)
  answer  kill -> the pipeline's answer starts playing (playback.started from the TTS)

and per call the caller's longest wait (end of a line or call start -> next voiced frame). The
baseline beside them: the same script with no fault, on the same system, in the same run.

    .venv/bin/python bench/failover.py [--kills 5] [--kinds stt_worker,brain,tts_worker]
                                        [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

from fault_caller import Hook  # noqa: E402
from fault_check import CallRecord  # noqa: E402
from fault_run import (  # noqa: E402
    SAMPLE,
    Blow,
    Running,
    Systems,
    connect,
    hit_owner,
    make_phrase_cache,
    place_call,
    takeover_s,
    texts,
)

from brain.store import apply_schema  # noqa: E402
from events import schemas  # noqa: E402
from events.bus import Bus  # noqa: E402
from voicebot.servers import PostgresServer, free_port  # noqa: E402

KINDS = ("stt_worker", "brain", "tts_worker")


def summary(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    return {
        "n": len(values),
        "missing": len(values) - len(got),
        "median_s": round(statistics.median(got), 3) if got else None,
        "max_s": round(max(got), 3) if got else None,
        "all_s": [None if v is None else round(v, 3) for v in values],
    }


def answer_s(record: CallRecord, blow: Blow) -> float | None:
    starts = [
        p.ts
        for p in record.of(schemas.PlaybackStarted)
        if p.origin == "tts" and p.ts > blow.at_wall
    ]
    return min(starts) - blow.at_wall if starts else None


async def kill_series(running: Running, bus: Bus, kind: str, kills: int) -> dict[str, Any]:
    measured: dict[str, list[float | None]] = {"claim": [], "heard": [], "answer": []}
    longest: list[float] = []
    problems: list[str] = []
    while len(measured["claim"]) < kills:
        call_id = str(uuid.uuid4())
        todo = min(len(SAMPLE), kills - len(measured["claim"]))
        blows = [Blow(kind, signal.SIGKILL) for _ in range(todo)]
        hooks: dict[str, Hook] = {}
        for n, blow in enumerate(blows, 1):
            # Before each line: two instances ready again (the killed one was restarted).
            hooks[f"between:{n - 1}"] = running.system.wait_settled
            hooks[f"caller_speech:{n}"] = hit_owner(bus, call_id, blow)
        result, record = await place_call(running, bus, SAMPLE, call_id=call_id, hooks=hooks)
        longest.append(result.longest_wait)
        problems += result.errors + record.lost(texts(SAMPLE)) + record.duplicates()
        for blow in blows:
            dealt = bool(blow.pid)
            measured["claim"].append(takeover_s(record, blow) if dealt else None)
            measured["heard"].append(result.heard_again(blow.at) if dealt else None)
            measured["answer"].append(answer_s(record, blow) if dealt else None)
    return {
        "kills": len(measured["claim"]),
        **{name: summary(values) for name, values in measured.items()},
        "longest_wait_s": round(max(longest), 3),
        "problems": problems,
    }


def line(name: str, s: dict[str, Any]) -> str:
    if s["median_s"] is None:
        return f"{name:<7} never ({s['n']} kills)"
    missing = f", {s['missing']} never" if s["missing"] else ""
    return f"{name:<7} median {s['median_s']:5.2f} s  max {s['max_s']:5.2f} s{missing}"


async def run(args: argparse.Namespace, root: Path, pg: PostgresServer) -> dict[str, Any]:
    await apply_schema(pg.url)
    make_phrase_cache(root / "cache")
    systems = Systems(root, pg, root / "cache", env={"LOG_LEVEL": "WARNING"})
    running = await asyncio.to_thread(systems.get, "shared")
    figures: dict[str, Any] = {"kills_per_kind": args.kills}
    try:
        async with connect(running) as bus:
            result, _ = await place_call(running, bus, SAMPLE)
            waits = [w.seconds for w in result.waits()]
            figures["baseline"] = {
                "longest_wait_s": round(result.longest_wait, 3),
                "waits_s": [None if w is None else round(w, 3) for w in waits],
            }
            print(
                f"baseline (no fault): caller's longest wait {result.longest_wait:.2f} s, "
                f"answers {statistics.median([w for w in waits[1:] if w]):.2f} s after a line "
                "(median)",
                flush=True,
            )
            for kind in args.kinds:
                started = time.monotonic()
                got = await kill_series(running, bus, kind, args.kills)
                figures[kind] = got
                print(f"\n{kind}: {got['kills']} kill -9 of the call's owner, mid-line", flush=True)
                print("  " + line("claim", got["claim"]), "(kill -> new owner's event.claimed)")
                print("  " + line("heard", got["heard"]), "(kill -> caller hears the bot again)")
                print("  " + line("answer", got["answer"]), "(kill -> the pipeline's answer plays)")
                print(f"  caller's longest wait {got['longest_wait_s']:.2f} s", end="")
                print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
                for problem in got["problems"]:
                    print(f"  problem: {problem}")
    finally:
        await asyncio.to_thread(systems.close)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="kills per worker kind")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    args.kinds = [k for k in args.kinds.split(",") if k]
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {KINDS}")
    print(f"failover on {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="voicebot-bench-failover-"))
    os.chmod(root, 0o755)  # PostgreSQL runs as the unprivileged `postgres` user under root
    pg = PostgresServer(data_dir=root / "pg", port=free_port(), fast=True)
    pg.start()
    try:
        figures = asyncio.run(run(args, root, pg))
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    bad = any(figures[k]["problems"] for k in args.kinds)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
