"""`make quality`: scripted French callers through the AudioSocket port, judged end to end.

    .venv/bin/python -m quality [--concurrency 2] [--matrix pair|one|full] [--personas a,b]
    .venv/bin/python -m quality --host 127.0.0.1 --port 9090   # a running system (NATS_URL)

Without --port it starts the system itself (`voicebot up` on free ports, offline providers,
data under var/quality), places the calls, stops it. Each persona (quality/personas.py) is
heard in two conditions by default (`--matrix pair`: one clean, one noisy, the other voice and
rate), `one` for a quicker look, `full` for all eight. It prints the figures and writes them
with every call's details to bench/results/quality.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from events import env
from events.runtime import setup_logging
from quality import report, synth
from quality.observer import Watch
from quality.personas import PERSONAS, Persona
from quality.record import CallRecord
from quality.runner import CallLimits, Job, Target, run_all
from quality.system import Ports, voicebot_up

PROJECT = Path(__file__).resolve().parent.parent
MATRICES = ("pair", "one", "full")


def jobs_for(personas: list[Persona], matrix: str, voices: tuple[str, str]) -> list[Job]:
    conds = synth.conditions(voices)
    jobs = []
    for i, p in enumerate(personas):
        match matrix:
            case "one":
                chosen = [conds[i % len(conds)]]
            case "pair":
                chosen = [conds[(2 * i) % len(conds)], conds[(2 * i + 1) % len(conds)]]
            case _:
                chosen = conds
        jobs += [Job(p, c) for c in chosen]
    return jobs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m quality", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="AudioSocket host (with --port)")
    p.add_argument(
        "--port", type=int, default=None, help="AudioSocket port of a running system (+NATS_URL)"
    )
    p.add_argument(
        "--http-port", type=int, default=None, help="its HTTP API (default HTTP_PORT or 8080)"
    )
    p.add_argument(
        "--port-base",
        type=int,
        default=None,
        help="the started system's ports: AudioSocket, HTTP, metrics, NATS, PostgreSQL from "
        "this one on (default: free ports)",
    )
    p.add_argument("--concurrency", type=int, default=2, help="calls at once (default 2)")
    p.add_argument("--matrix", choices=MATRICES, default="pair")
    p.add_argument("--personas", default="", help="comma-separated keys (default: all)")
    p.add_argument("--list", action="store_true", help="list the personas and exit")
    p.add_argument("--max-lines", type=int, default=14, help="a caller's patience, in lines")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="default <VOICEBOT_DATA_DIR>/quality"
    )
    p.add_argument(
        "--json",
        type=Path,
        default=PROJECT / "bench" / "results" / "quality.json",
        help="where to write the figures (default bench/results/quality.json)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env.load_dotenv()
    setup_logging(env.get_str("LOG_LEVEL", "WARNING"))
    if args.list:
        for p in PERSONAS:
            print(f"{p.key:<30} {p.about}  [expect {p.expect.describe()}]")
        return 0
    personas = list(PERSONAS)
    if args.personas:
        wanted = [k.strip() for k in args.personas.split(",") if k.strip()]
        known = {p.key: p for p in PERSONAS}
        if unknown := [k for k in wanted if k not in known]:
            print(f"quality: unknown persona(s) {unknown}; see --list", file=sys.stderr)
            return 2
        personas = [known[k] for k in wanted]
    if args.concurrency < 1:
        print("quality: --concurrency must be at least 1", file=sys.stderr)
        return 2
    data_dir = args.data_dir or Path(env.get_str("VOICEBOT_DATA_DIR", "var")) / "quality"
    given = None
    if args.port is not None:
        nats_url = env.get_opt("NATS_URL")
        if not nats_url:
            print("quality: with --port, set NATS_URL to the system's NATS", file=sys.stderr)
            return 2
        http = args.http_port or env.get_int("HTTP_PORT", 8080)
        given = (Target(args.host, args.port, http), nats_url)
    try:
        return asyncio.run(_run(args, personas, given, data_dir.resolve(), dict(os.environ)))
    except KeyboardInterrupt:
        return 130


async def _run(
    args: argparse.Namespace,
    personas: list[Persona],
    given: tuple[Target, str] | None,
    data_dir: Path,
    environ: dict[str, str],
) -> int:
    voices = synth.voices()
    jobs = jobs_for(personas, args.matrix, voices)
    limits = CallLimits(max_lines=args.max_lines)
    machine = report.machine()
    print(
        f"{len(jobs)} calls: {len(personas)} personas, matrix {args.matrix}, voices "
        f"{'/'.join(voices)}, concurrency {args.concurrency}, load {machine['load_avg'][0]:.2f}",
        flush=True,
    )
    started = time.monotonic()
    if given is not None:
        target, nats_url = given
        records = await _calls(jobs, target, nats_url, args.concurrency, limits)
        where = f"{target.host}:{target.audiosocket_port}"
    else:
        ports = Ports.free() if args.port_base is None else Ports.from_base(args.port_base)
        print(f"starting voicebot up (offline providers, data {data_dir}) ...", flush=True)
        async with voicebot_up(ports, data_dir, environ) as system:
            target = Target("127.0.0.1", ports.audiosocket, ports.http)
            records = await _calls(jobs, target, system.nats_url, args.concurrency, limits)
        where = "voicebot up, offline default (Whisper base, rules, espeak-ng)"
    run = {
        "target": where,
        "personas": len(personas),
        "matrix": args.matrix,
        "concurrency": args.concurrency,
        "voices": list(voices),
        "rates": list(synth.RATES),
        "noise": (
            f"noise pink/babble at {synth.SNR_DB:g} dB SNR on half the calls, "
            f"telephone band {synth.BAND_HZ[0]:g}-{synth.BAND_HZ[1]:g} Hz"
        ),
        "max_lines": limits.max_lines,
        "max_call_s": limits.max_call_s,
        "elapsed_s": round(time.monotonic() - started, 1),
        "command": ["python", "-m", "quality", *(sys.argv[1:])],
    }
    figures = report.summarize(records)
    report.print_table(figures, run)
    report.write_json(args.json, figures, run, records, machine)
    print(f"\nfigures and every call's dialog: {args.json}")
    return 0


async def _calls(
    jobs: list[Job], target: Target, nats_url: str, concurrency: int, limits: CallLimits
) -> list[CallRecord]:
    watch = await Watch.connect(nats_url)
    try:
        return await run_all(jobs, target, watch, concurrency=concurrency, limits=limits)
    finally:
        await watch.close()


if __name__ == "__main__":
    sys.exit(main())
