"""Outbound pacing of the edge as Asterisk would see it, against a hand-rolled baseline.

    .venv/bin/python bench/edge_pacing.py [--calls 20,100,200] [--seconds 10] [--repeat 1]
        [--servers edge,naive,up] [--silent] [--pipeline [--pipeline-nice N]]
        [--edge-priority normal|nice|rt] [--edge-env KEY=VALUE] [--json F]

Starts a nats-server, then for each call count and each server, in separate processes:
  edge   `python -m edge` (the production shape: the edge alone in its process, uvloop, one
         shared 20 ms ticker). Unless --silent, a feeder process plays the bot: on each call's
         event.started it publishes utterances on call.<id>.audio.out the way the TTS worker
         publishes a cached phrase (3 s in 100 ms messages of 5 frames, all at once, with
         events.audio.out_headers), then 0.5 s of pause, again.
  naive  bench/naive_server.py: one task per call, `await asyncio.sleep(0.02)` between frames.
and measures it with bench/loadcaller.c (one epoll loop, one shared timer; a talking caller:
a tone burst every other second, so with the edge its audio.in flows to NATS too).

With --pipeline, `voicebot up` (offline providers) runs on the same NATS beside the edge: the
brain greets each call, the TTS answers, the offline STT transcribes the callers' tones. Its own
edge listens on spare ports and gets no call; the measured edge stays its own process. The `up`
server measures `voicebot up`'s own edge instead (a child process that raises itself to SCHED_RR
when allowed, EDGE_RT_PRIORITY). The `edge` server runs with EDGE_RT_PRIORITY=0 and
--edge-priority decides: `nice -n -10` or SCHED_RR (`chrt --rr 10`); --pipeline-nice lowers the
pipeline instead.
The caller itself runs under SCHED_RR when it can (root): on a loaded 2-core machine a caller at
normal priority waits for the CPU and stamps frames late, blaming the server for it.

Figures (definitions in loadcaller.c): inter-frame lateness p50/p99/max, drift p99 from the
ideal grid, frame deficit %, bursts (< 5 ms apart), gaps (>= 30 ms apart), dropped calls (closed
without a hang-up message), bot% (received frames that were not silence: the bot was heard),
and CPU % of one core used by the server process over the window (/proc/<pid>/stat utime+stime,
with its child processes), plus NATS's and the pipeline's. Logs of every process: var/bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import loadcaller  # noqa: E402

from voicebot.servers import NatsServer, PostgresServer, free_port, wait_port  # noqa: E402

LOG_DIR = ROOT / "var" / "bench"
UTTERANCE_S = 3.0
PAUSE_S = 0.5
MESSAGE_FRAMES = 5  # 100 ms: AUDIO_OUT_BATCH_MS's default


# --- the bot's side: a feeder process ------------------------------------------------------------


def utterance_pcm(seconds: float) -> bytes:
    """A 300 Hz tone, s16le 8 kHz: what the bot says does not matter to the pacer."""
    samples = int(seconds * 8000)
    return b"".join(
        int(6000 * math.sin(2 * math.pi * 300 * i / 8000)).to_bytes(2, "little", signed=True)
        for i in range(samples)
    )


async def feed(nats_url: str, ids_file: Path) -> None:
    from events import audio, subjects
    from events.bus import Bus

    wanted = set((await asyncio.to_thread(ids_file.read_text)).split())
    bus = await Bus.connect(nats_url, "bench-feeder")
    pcm = utterance_pcm(UTTERANCE_S)
    step = MESSAGE_FRAMES * audio.FRAME_BYTES
    chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    tasks: set[asyncio.Task[None]] = set()

    async def speak(call_id: str) -> None:
        await asyncio.sleep(random.uniform(0, 0.5))  # calls do not all speak in phase
        subject = subjects.audio_out(call_id)
        for n in range(1_000_000):
            utterance = f"bench-{n}"
            for seq, chunk in enumerate(chunks):
                headers = audio.out_headers(utterance, seq, last=seq == len(chunks) - 1)
                await bus.publish_audio(subject, chunk, headers)
            await asyncio.sleep(UTTERANCE_S + PAUSE_S)

    async def on_started(msg: Any) -> None:
        call_id = msg.subject.split(".")[1]
        if call_id in wanted:
            wanted.discard(call_id)
            task = asyncio.create_task(speak(call_id))
            tasks.add(task)

    await bus.nc.subscribe("call.*.event.started", cb=on_started)
    print("READY", flush=True)
    await asyncio.Event().wait()


# --- processes -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(pid: int) -> float:
    """CPU of a process and its live descendants (the pipeline's inference processes)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        if child == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def spawn(
    cmd: list[str], log_name: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A child in its own process group, so `stop` also ends what it started (pool workers)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with (LOG_DIR / log_name).open("w") as log:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[str], grace_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL for the whole group: a `voicebot up` stuck behind a Whisper backlog
    would otherwise leave its process-pool workers running, orphaned, loading the next runs."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def wait_ready(proc: subprocess.Popen[str], what: str, timeout: float = 60.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "READY" in line:
            return
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"{what} did not start (see {LOG_DIR})")


PRIORITY_PREFIX = {
    "normal": [],
    "nice": ["nice", "-n", "-10"],  # needs root or CAP_SYS_NICE
    "rt": ["chrt", "--rr", "10"],  # SCHED_RR: runs before any normal process that wants the CPU
}


def start_edge(
    port: int, nats_url: str, priority: str = "normal", extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {
        **(extra_env or {}),
        "NATS_URL": nats_url,
        "AUDIOSOCKET_HOST": "127.0.0.1",
        "AUDIOSOCKET_PORT": str(port),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(free_port()),
        "METRICS_PORT": str(free_port()),
        "MAX_CONCURRENT_CALLS": "1000",
        # The edge raises itself to SCHED_RR by default; here `priority` decides, through chrt.
        "EDGE_RT_PRIORITY": "0",
    }
    proc = spawn([*PRIORITY_PREFIX[priority], sys.executable, "-m", "edge"], "edge.log", env)
    wait_port(port, 30.0, proc)  # type: ignore[arg-type]
    return proc


def start_naive(port: int) -> subprocess.Popen[str]:
    proc = spawn([sys.executable, str(HERE / "naive_server.py"), "--port", str(port)], "naive.log")
    wait_ready(proc, "the naive server")
    return proc


@dataclass(frozen=True)
class Pipeline:
    proc: subprocess.Popen[str]
    edge_port: int  # the edge inside `voicebot up`: the `up` server of this bench


def start_pipeline(
    nats_url: str, stack: ExitStack, niceness: int = 0, extra_env: dict[str, str] | None = None
) -> Pipeline:
    """`voicebot up` with offline providers on our NATS; its own edge (a child process at
    real-time priority, as `voicebot up` runs it) idles on spare ports unless the `up` server
    is measured.

    The bench starts the PostgreSQL itself (and `stack` stops it), so a pipeline that is killed
    rather than stopped leaves no server behind for the next run to trip on.
    """
    pg = PostgresServer(data_dir=LOG_DIR / "pg", port=free_port(), fast=True)
    pg.start()
    stack.callback(pg.stop)
    env = {
        "NATS_URL": nats_url,
        "DATABASE_URL": pg.url,
        "AUDIOSOCKET_HOST": "127.0.0.1",
        "AUDIOSOCKET_PORT": str(edge_port := free_port()),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(free_port()),
        "METRICS_PORT": str(free_port()),
        "STT_METRICS_PORT": "0",
        "BRAIN_METRICS_PORT": "0",
        "TTS_METRICS_PORT": "0",
        "ARCHIVER_METRICS_PORT": "0",
        "CONSOLE_PORT": "0",  # the call console: not needed here
        "MAX_CONCURRENT_CALLS": "1000",
        "STT_PROVIDER": "whisper",
        "NLU_PROVIDER": "rules",
        "TTS_PROVIDER": "espeak",
        **(extra_env or {}),
    }
    data_dir = LOG_DIR / "up"
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "voicebot.cli", "up", "--data-dir", str(data_dir)]
    if niceness:
        cmd = ["nice", "-n", str(niceness), *cmd]  # its pool processes inherit it
    proc = spawn(cmd, "pipeline.log", env)
    stack.callback(stop, proc)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the banner's first line says it is up
        line = proc.stdout.readline()
        if "AudioSocket Server started" in line:
            return Pipeline(proc, edge_port)
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"voicebot up did not start (see {LOG_DIR / 'pipeline.log'})")


# --- one measurement -----------------------------------------------------------------------------


def measure(
    server: str,
    calls: int,
    seconds: float,
    *,
    nats: NatsServer,
    talk: bool,
    pipeline: Pipeline | None,
    priority: str = "normal",
    edge_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    port = free_port()
    ids = [str(uuid.uuid4()) for _ in range(calls)]
    warmup = 2.0 + calls / 100  # call set-up (subscriptions, event.started) is not steady state
    with ExitStack() as stack:
        if server == "up":
            if pipeline is None:
                raise ValueError("the `up` server needs --pipeline")
            port, proc = pipeline.edge_port, pipeline.proc
        elif server == "edge":
            proc = start_edge(port, nats.url, priority, edge_env)
            stack.callback(stop, proc)
        else:
            proc = start_naive(port)
            stack.callback(stop, proc)
        speaks = server != "naive" and talk
        if speaks:
            ids_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "ids"
            ids_file.write_text("\n".join(ids))
            cmd = [sys.executable, __file__, "--feed", nats.url, "--ids-file", str(ids_file)]
            feeder = spawn(cmd, "feeder.log")
            stack.callback(stop, feeder)
            wait_ready(feeder, "the feeder")
        watched = {"server": proc.pid}
        if nats.proc is not None:
            watched["nats"] = nats.proc.pid
        if pipeline is not None and server != "up":
            watched["pipeline"] = pipeline.proc.pid
        result: dict[str, Any] = {}
        cpu: dict[str, float] = {}

        def sample_cpu() -> None:
            time.sleep(warmup)
            t0 = time.monotonic()
            before = {k: children_cpu(p) for k, p in watched.items()}
            time.sleep(seconds)
            spent = time.monotonic() - t0
            cpu.update({k: 100 * (children_cpu(p) - before[k]) / spent for k, p in watched.items()})

        sampler = threading.Thread(target=sample_cpu)
        sampler.start()
        result = loadcaller.run(
            port, calls, seconds, warmup=warmup, speak=True, call_ids=ids, realtime=True
        )
        sampler.join()
    per_call = result.pop("per_call", [])
    worst = max((c["lateness_p99_ms"] or 0.0 for c in per_call), default=0.0)
    return {
        "server": server,
        "bot_speaking": speaks,
        "pipeline": pipeline is not None,
        "priority": priority if server == "edge" else "normal",
        "edge_env": (edge_env or {}) if server == "edge" else {},
        **result,
        "worst_call_p99_ms": worst,
        "bot_voiced_pct": 100 * result["voiced_frames"] / max(1, result["frames_received"]),
        "calls_with_deficit": sum(1 for c in per_call if c["deficit_frames"] > 1),
        "server_cpu_pct": cpu.get("server"),
        "nats_cpu_pct": cpu.get("nats"),
        "pipeline_cpu_pct": cpu.get("pipeline"),
        "load_before": os.getloadavg()[0],
    }


COLUMNS = (  # (title, key, format)
    ("calls", "calls", "d"),
    ("server", "server", ""),
    ("p50 ms", "lateness_p50_ms", ".2f"),
    ("p99 ms", "lateness_p99_ms", ".2f"),
    ("max ms", "lateness_max_ms", ".2f"),
    ("drift99", "drift_p99_ms", ".1f"),
    ("deficit%", "deficit_pct", ".2f"),
    ("bursts", "bursts", "d"),
    ("gaps", "gaps", "d"),
    ("dropped", "dropped", "d"),
    ("bot%", "bot_voiced_pct", ".0f"),
    ("cpu%", "server_cpu_pct", ".0f"),
    ("nats%", "nats_cpu_pct", ".0f"),
    ("pipe%", "pipeline_cpu_pct", ".0f"),
)
HEADER = " ".join(f"{title:>8}" for title, _, _ in COLUMNS)


def row(r: dict[str, Any]) -> str:
    cells = []
    for _, key, spec in COLUMNS:
        v = r.get(key)
        cells.append(f"{'-' if v is None else format(v, spec):>8}")
    return " ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="20,100,200")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--servers", default="edge,naive")
    parser.add_argument("--silent", action="store_true", help="the bot does not speak")
    parser.add_argument("--pipeline", action="store_true", help="run `voicebot up` beside it")
    parser.add_argument(
        "--pipeline-nice", type=int, default=0, help="run `voicebot up` under this niceness"
    )
    parser.add_argument(
        "--edge-priority",
        choices=sorted(PRIORITY_PREFIX),
        default="normal",
        help="run the edge under nice -10 or SCHED_RR (root)",
    )
    parser.add_argument(
        "--edge-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the edge, e.g. AUDIO_IN_BATCH_MS=100 (repeatable)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--feed", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        import uvloop

        uvloop.run(feed(args.feed, args.ids_file))
        return

    caller = loadcaller.build()
    realtime = loadcaller.can_realtime()
    print(
        f"load caller: {caller or 'Python fallback (no C compiler)'}"
        f"{' under SCHED_RR' if realtime else ''}; {os.cpu_count()} CPUs"
    )
    if args.edge_priority != "normal" and not realtime:
        print(
            f"cannot raise priorities here (not root): --edge-priority {args.edge_priority} ignored"
        )
        args.edge_priority = "normal"
    results = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        nats = NatsServer(store_dir=Path(tmp) / "nats", port=free_port())
        nats.start()
        stack.callback(nats.stop)
        pipeline = None
        if args.pipeline:
            pipeline = start_pipeline(nats.url, stack, args.pipeline_nice)
        print(HEADER, flush=True)
        for calls in (int(c) for c in args.calls.split(",")):
            for _ in range(args.repeat):
                for server in args.servers.split(","):
                    r = measure(
                        server,
                        calls,
                        args.seconds,
                        nats=nats,
                        talk=not args.silent,
                        pipeline=pipeline,
                        priority=args.edge_priority,
                        edge_env=dict(kv.split("=", 1) for kv in args.edge_env),
                    )
                    results.append(r)
                    print(row(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
