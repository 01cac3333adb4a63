"""`make bench`: every bench script in turn, with sizes that fit in ~10 minutes on 2 cores.

    .venv/bin/python -m bench [NAME ...] [--list]

Each bench runs as its own process (its output goes to the console as it comes), then its
figures are written to bench/results/<name>.json with the date, the machine's CPU count and
load, and the exact command, so a result can be re-run and compared. A bench that fails is
reported and the others still run; the exit code says whether all passed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
JSON_ARG = "{json}"  # replaced by a temporary file the bench writes its figures to
TIMEOUT_S = 600


PIPELINE_ARGS = ("--pipeline", "--servers", "edge", "--calls", "100,200", "--seconds", "6")


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...]
    about: str
    timeout_s: float = TIMEOUT_S


BENCHES = (
    Bench(
        "edge",
        "edge_pacing.py",
        ("--calls", "20,100,200", "--seconds", "6", "--json", JSON_ARG),
        "outbound pacing of the edge vs a sleep-per-call server, the bot speaking",
    ),
    Bench(
        "edge_pipeline",
        "edge_pacing.py",
        (
            "--pipeline",
            "--servers",
            "up,naive",
            "--calls",
            "20,100,200",
            "--seconds",
            "6",
            "--json",
            JSON_ARG,
        ),
        "the whole `voicebot up` (its edge a real-time child process, offline STT/NLU/TTS) "
        "vs the sleep-per-call baseline on the same loaded machine",
    ),
    Bench(
        "edge_pipeline_normal",
        "edge_pacing.py",
        (*PIPELINE_ARGS, "--json", JSON_ARG),
        "why the edge runs at real-time priority: an edge at normal priority beside the pipeline",
    ),
    Bench(
        "console_live",
        "console_live.py",
        ("--calls", "100", "--seconds", "6", "--repeat", "2", "--json", JSON_ARG),
        "edge pacing of `voicebot up` at 100 calls, without and with a live console page "
        "following them (an SSE reader of /api/live)",
    ),
    Bench(
        "capacity",
        "capacity.py",
        ("--pacing-calls", "20,100,200", "--cloud-calls", "100,200", "--json", JSON_ARG),
        "issue 15: silent calls arriving together through make run's shape (loadcaller.c) vs "
        "the bare uvloop ticker at 20/100/200; the load caller cross-checked; loopback cloud "
        "providers at 100/200 speaking calls (turn and pipeline-added latency, under-runs, "
        "CPU, NATS messages and memory per call) vs 1 call",
        timeout_s=1500,
    ),
    Bench(
        "tts",
        "tts_latency.py",
        ("--phrases", "60", "--texts", "12"),
        "TTS worker: say -> first audio.out",
    ),
    Bench(
        "stt_offline",
        "stt_offline.py",
        ("--seconds", "6", "--pools", "1", "--levels", "1,2,4", "--json", JSON_ARG),
        "offline Whisper: recognition time, callers per pool",
    ),
    Bench(
        "stt_turns",
        "stt_turns.py",
        ("--json", JSON_ARG),
        "end of turn: energy VAD 600 ms vs Silero + speculative recognition, cut-offs, latency",
    ),
    Bench(
        "stt_answers",
        "stt_answers.py",
        ("--json", JSON_ARG),
        "short answers recognised with and without the bot's expectation",
    ),
    Bench(
        "stt_closed",
        "stt_closed.py",
        ("--json", JSON_ARG),
        "answers to the closed questions (2 voices x 2 rates x clean/pink/babble) recognised "
        "and understood as the offline default does: right, asked again, or wrong",
    ),
    Bench(
        "stt_numbers",
        "stt_numbers.py",
        ("--json", JSON_ARG),
        "French phone numbers (pairs, digits, as text, after a name; 2 voices x 2 rates x "
        "clean/noisy) through offline Whisper, read back by the brain's phone parser",
    ),
    Bench(
        "claim_latency",
        "claim_latency.py",
        ("--json", JSON_ARG),
        "a call's `started` stored -> a worker's claim loop takes it: calls 4 a second, and 200 "
        "at once",
    ),
    Bench(
        "nats_sync",
        "nats_sync.py",
        ("--calls", "200", "--rate", "5", "--seconds", "3"),
        "CALLS stream with fsync before every ack: ack latency",
    ),
    Bench(
        "archive",
        "archive.py",
        ("--calls", "12", "--minutes", "3", "--workers", "1,2", "--json", JSON_ARG),
        "voicebot archive: call-minutes to verified stereo MP3 per second, 1 and 2 workers, "
        "vs real time",
    ),
    Bench(
        "archiver_projection",
        "archiver_projection.py",
        ("--calls", "60", "--batches", "1,256", "--json", JSON_ARG),
        "archiver: CALLS messages into PostgreSQL per second, batched vs one per transaction",
    ),
    Bench(
        "archiver_long_calls",
        "archiver_projection.py",
        ("--calls", "40", "--turns", "40", "--batches", "64,256", "--json", JSON_ARG),
        "archiver: CPU per CALLS message when calls are long (364 events each)",
    ),
    Bench(
        "inbound_batching",
        "inbound_batching.py",
        ("--json", JSON_ARG),
        "audio.in messages a second for recorded French lines: the edge's tail window vs the "
        "previous rule and one message a frame, and how late the frames the recognisers decide "
        "on are held",
    ),
    Bench(
        "provider_connections",
        "provider_connections.py",
        ("--json", JSON_ARG),
        "Groq and OpenAI requests 6 s apart, as a caller's lines come, through the real SDKs: "
        "new connections (each charged 150 ms of handshakes) and time over the provider's delay, "
        "with the SDKs' 5 s pool vs ours",
    ),
    Bench(
        "failover",
        "failover.py",
        ("--kills", "5", "--json", JSON_ARG),
        "kill -9 of a live call's owner, 5 times per worker kind: time to the new owner's claim "
        "and to the caller hearing the bot again, vs a fault-free call",
    ),
    Bench(
        "stt_deepgram",
        "stt_deepgram.py",
        ("--calls", "100", "--seconds", "5"),
        "Deepgram provider against a loopback server: CPU per call, send latency",
    ),
)


HELPERS = frozenset(
    {"__main__.py", "loadcaller.py", "naive_server.py", "bare_ticker.py", "loopback_providers.py"}
)


def unlisted() -> list[str]:
    """Bench scripts someone added without telling the runner: said, not silently skipped."""
    listed = {b.script for b in BENCHES} | HELPERS
    return sorted(p.name for p in HERE.glob("*.py") if p.name not in listed)


def trailing_json(output: str) -> Any:
    """The last JSON object a bench printed (stt_deepgram prints its figures that way)."""
    end = output.rstrip().rfind("}")
    start = output.rfind("\n{", 0, end)
    candidates = [start + 1] if start >= 0 else []
    if output.startswith("{"):
        candidates.append(0)
    for begin in candidates:
        try:
            return json.loads(output[begin : end + 1])
        except json.JSONDecodeError:
            continue
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])  # MemTotal comes first
    return {
        "cpus": os.cpu_count(),
        "cpu_model": models[0] if models else platform.processor(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def run(bench: Bench) -> bool:
    print(f"\n=== {bench.name}: {bench.about}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        figures_file = Path(tmp) / "figures.json"
        args = [str(figures_file) if a == JSON_ARG else a for a in bench.args]
        cmd = [sys.executable, str(HERE / bench.script), *args]
        load = os.getloadavg()
        started = time.monotonic()
        lines: list[str] = []
        with subprocess.Popen(
            cmd, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:  # the bench bounds its own run; timeout_s is the backstop
                print(line, end="", flush=True)
                lines.append(line)
                if time.monotonic() - started > bench.timeout_s:
                    proc.kill()
                    lines.append(f"killed after {bench.timeout_s:.0f} s\n")
                    break
            code = proc.wait()
        output = "".join(lines)
        if figures_file.exists():
            figures = json.loads(figures_file.read_text())
        else:
            figures = trailing_json(output)
    elapsed = time.monotonic() - started
    record = {
        "bench": bench.name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "machine": machine(),
        "load_avg_before": [round(x, 2) for x in load],
        "command": [Path(sys.executable).name, f"bench/{bench.script}", *bench.args],
        "returncode": code,
        "elapsed_s": round(elapsed, 1),
        "figures": figures,
        "output": output.splitlines(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{bench.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    status = "ok" if code == 0 else f"FAILED (exit {code})"
    print(f"=== {bench.name}: {status} in {elapsed:.0f} s -> bench/results/{bench.name}.json")
    return code == 0


def main() -> int:
    names = [b.name for b in BENCHES]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"run only these: {names}")
    parser.add_argument("--list", action="store_true", help="list the benches and exit")
    args = parser.parse_args()
    if args.list:
        for b in BENCHES:
            print(f"{b.name:14} {b.about}")
        return 0
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown bench {unknown}; choose from {names}")
    chosen = [b for b in BENCHES if not args.names or b.name in args.names]
    print(f"{len(chosen)} bench(es) on {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    if missing := unlisted():
        print(f"note: not run by `make bench` (add them to bench/__main__.py): {missing}")
    results = {b.name: run(b) for b in chosen}
    failed = [n for n, ok in results.items() if not ok]
    print("\nall benches passed" if not failed else f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
