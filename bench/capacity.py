"""Capacity on this machine, as Asterisk sees it: pacing and turn latency at 20 to 200 calls.

    .venv/bin/python bench/capacity.py [--parts pacing,crosscheck,cloud]
        [--pacing-calls 20,100,200] [--cloud-calls 100,200] [--crosscheck-calls 200]
        [--seconds 11] [--up-env KEY=VALUE] [--json F] [--profile DIR]

pacing      `voicebot up` as `make run` starts it (offline providers; MAX_CONCURRENT_CALLS=250
            the only change), N calls connecting together, each silent after its UUID,
            measured from outside by bench/loadcaller.c at SCHED_RR 20 over --seconds after a
            1 s warm-up. Baseline, same run: bench/bare_ticker.py (one uvloop ticker writing
            silence, no pipeline), measured the same way.
crosscheck  the built-in load caller (`voicebot call --calls N`, SCHED_RR 20) beside the C
            caller on the same servers: the bare ticker, and the edge of the pacing part, at
            --crosscheck-calls; and its own tick lateness.
cloud       bench/loopback_providers.py (Deepgram final 300 ms after the end of speech, LLM
            150 ms, speech first audio 200 ms) and `voicebot up` with them; `voicebot call
            --calls N --keyed` speaks the sample dialog (5 lines, the bot's answers: 4 cached
            phrases, 1 synthesized text), the calls connecting at 10 a second.
            --baseline-calls (5) first (the baseline: the pipeline unloaded, 25 turns where
            one call's 5 swung its p50 from 24 to 54 ms), then each N: turn latency and
            pipeline-added latency (turn latency minus the providers' own delays), under-runs
            (the edge's counter), dropped calls, CPU per call of each process, NATS messages
            per second, memory per call. TTS_LRU_SIZE=0: every synthesized answer pays the
            provider's 200 ms (the figure subtracts it).
            With --profile DIR, each N above 1 is also profiled over the CPU window:
            `py-spy record --nonblocking --format raw` (collapsed stacks, which speedscope
            opens) of every Python process (the services, the caller, the loopbacks) at
            PROFILE_RATE Hz; DIR/<N>/<process>.txt and a summary (DIR/<N>/summary.txt, also
            printed): how busy each process was, its functions by own samples, the project's
            functions by total samples, own samples by package. pip install py-spy first.

Every process runs at its normal priority, the edge at SCHED_RR 10 as `voicebot up` starts
it; the callers at SCHED_RR 20, as an Asterisk on its own machine would not wait for our CPU;
the loopback providers at SCHED_RR 5 (they stand for servers on other machines: their own
lateness is printed and must stay small). Logs: var/bench/capacity/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import loadcaller  # noqa: E402

from voicebot.servers import free_port, wait_port  # noqa: E402

LOG_DIR = ROOT / "var" / "bench" / "capacity"
VOICEBOT = [sys.executable, "-m", "voicebot.cli"]
PROVIDER_DELAYS_MS = (300, 150, 200)
SERVICES = ("edge", "stt_worker", "brain", "tts_worker", "archiver")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cmd: str
    cpu_s: float
    rss: int


def processes() -> dict[int, Proc]:
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        pid = int(stat.parent.name)
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
        out[pid] = Proc(pid, int(fields[1]), cmd, cpu, int(fields[21]) * PAGE)
    return out


def tree(procs: dict[int, Proc], root: int) -> list[Proc]:
    """A process and its descendants (a service and its pool processes)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            found.append(procs[pid])
            todo += [p.pid for p in procs.values() if p.ppid == pid]
    return found


@dataclass
class System:
    """A running `voicebot up`: its process, ports and the pids of what it started."""

    proc: subprocess.Popen[str]
    env: dict[str, str]
    audiosocket: int
    metrics: int
    nats_monitor: int
    nats_port: int
    pids: dict[str, int] = field(default_factory=dict)  # service -> pid (from the banner)
    bench: dict[str, int] = field(default_factory=dict)  # the bench's own servers -> pid

    def groups(self) -> dict[str, list[int]]:
        """Process groups to account CPU and memory to: each service with its pool processes,
        nats-server, PostgreSQL (every backend)."""
        procs = processes()
        groups = {name: [p.pid for p in tree(procs, pid)] for name, pid in self.pids.items()}
        groups["nats"] = [
            p.pid
            for p in procs.values()
            if "nats-server" in p.cmd and f"-p {self.nats_port}" in p.cmd
        ]
        port = f"-p {self.env['PG_PORT']} "
        postmaster = [p.pid for p in procs.values() if "/postgres -D" in p.cmd and port in p.cmd]
        groups["postgres"] = [p for pid in postmaster for p in (x.pid for x in tree(procs, pid))]
        # not the pipeline, but on the same cores: the load caller and the loopback providers
        if callers := self.callers(procs):
            groups["caller"] = callers
        for name, pid in self.bench.items():
            groups[name] = [p.pid for p in tree(procs, pid)]
        return groups

    def callers(self, procs: dict[int, Proc]) -> list[int]:
        """The `voicebot call` processes calling this system."""
        port = f"--port {self.audiosocket} "
        return [p.pid for p in procs.values() if " voicebot.cli call " in p.cmd and port in p.cmd]


def spawn(cmd: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with (LOG_DIR / log).open("w") as out:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[str], grace_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def base_env(data_dir: Path) -> dict[str, str]:
    ports = {
        "AUDIOSOCKET_PORT": free_port(),
        "HTTP_PORT": free_port(),
        "METRICS_PORT": free_port(),
        "STT_METRICS_PORT": free_port(),
        "BRAIN_METRICS_PORT": free_port(),
        "TTS_METRICS_PORT": free_port(),
        "ARCHIVER_METRICS_PORT": free_port(),
        "NATS_PORT": free_port(),
        "NATS_MONITOR_PORT": free_port(),
        "PG_PORT": free_port(),
    }
    return {
        **{k: str(v) for k, v in ports.items()},
        "NATS_URL": "",
        "DATABASE_URL": "",
        "VOICEBOT_DATA_DIR": str(data_dir),
        "MAX_CONCURRENT_CALLS": "250",  # the one change to `make run`
        "AUDIOSOCKET_HOST": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
    }


BANNER_PID = re.compile(r"^\s+(\w+)\[1\]\s+pid (\d+)")


def start_up(name: str, extra: dict[str, str]) -> System:
    data_dir = LOG_DIR / name
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**base_env(data_dir), **extra}
    proc = spawn([*VOICEBOT, "up"], f"{name}.log", env)
    pids: dict[str, int] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    started = False
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        started = started or "AudioSocket Server started" in line
        if m := BANNER_PID.match(line):
            pids[m.group(1)] = int(m.group(2))
        if started and line.startswith("====="):
            system = System(
                proc,
                env,
                int(env["AUDIOSOCKET_PORT"]),
                int(env["METRICS_PORT"]),
                int(env["NATS_MONITOR_PORT"]),
                int(env["NATS_PORT"]),
                pids,
            )
            wait_port(system.audiosocket, 30)
            return system
    stop(proc)
    raise RuntimeError(f"voicebot up ({name}) did not start: see {LOG_DIR / (name + '.log')}")


@contextlib.contextmanager
def running_up(name: str, extra: dict[str, str]) -> Iterator[System]:
    system = start_up(name, extra)
    try:
        yield system
    finally:
        stop(system.proc)


# --- what the system did ------------------------------------------------------------------------


def scrape(port: int, name: str) -> float:
    """A Prometheus counter's value (summed over labels); 0 when absent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def varz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
    return data


@dataclass
class Usage:
    """CPU seconds and memory of each process group between two samples."""

    t: float
    cpu: dict[str, float]
    rss: dict[str, int]
    nats_in: int
    nats_out: int
    machine: tuple[int, int]  # busy and all jiffies of every CPU (/proc/stat)

    @classmethod
    def sample(cls, system: System) -> Usage:
        procs = processes()
        cpu, rss = {}, {}
        for name, pids in system.groups().items():
            cpu[name] = sum(procs[p].cpu_s for p in pids if p in procs)
            rss[name] = sum(procs[p].rss for p in pids if p in procs)
        v = varz(system.nats_monitor)
        jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        machine = (sum(jiffies) - jiffies[3] - jiffies[4], sum(jiffies))  # minus idle, iowait
        nats_in, nats_out = int(v["in_msgs"]), int(v["out_msgs"])
        return cls(time.monotonic(), cpu, rss, nats_in, nats_out, machine)


def usage_between(a: Usage, b: Usage) -> dict[str, Any]:
    dt = b.t - a.t
    return {
        "seconds": round(dt, 2),
        "cpu_pct": {k: round(100 * (b.cpu[k] - a.cpu.get(k, 0.0)) / dt, 1) for k in b.cpu},
        "rss_mb": {k: round(v / 2**20, 1) for k, v in b.rss.items()},
        "nats_in_per_s": round((b.nats_in - a.nats_in) / dt),
        "nats_out_per_s": round((b.nats_out - a.nats_out) / dt),
        # every process on the machine, % of one core (200 = both cores busy)
        "machine_busy_pct": round(
            100
            * (os.cpu_count() or 1)
            * (b.machine[0] - a.machine[0])
            / max(1, b.machine[1] - a.machine[1]),
            1,
        ),
    }


# --- profiles -----------------------------------------------------------------------------------

PROFILE_RATE = 50  # samples a second; py-spy's own CPU is printed with the summary
PROJECT = {"events", "brain", "edge", "stt_worker", "tts_worker", "archiver", "console", "voicebot"}
PROJECT |= {"bench", "loopback_providers.py"}
TOP = 8


@dataclass
class Profiler:
    """One `py-spy record --nonblocking` per process, started together."""

    out_dir: Path
    seconds: float
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)

    def start(self, targets: dict[str, int]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in targets.items():
            raw = self.out_dir / f"{name}.txt"
            cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking"]
            cmd += ["--pid", str(pid), "--duration", str(round(self.seconds))]
            cmd += ["--rate", str(PROFILE_RATE), "--format", "raw", "--nolineno"]
            cmd += ["--subprocesses"]  # pool processes; the loopbacks' three servers
            with (self.out_dir / f"{name}.log").open("w") as log:
                proc = subprocess.Popen([*cmd, "--output", str(raw)], stdout=log, stderr=log)
            self.running[name] = (proc, raw)

    def finish(self) -> dict[str, Any]:
        """Each process's summary, and py-spy's own CPU (% of a core, all of them)."""
        summaries: dict[str, Any] = {}
        spy_cpu_s = 0.0
        for name, (proc, raw) in self.running.items():
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            spy_cpu_s += rusage.ru_utime + rusage.ru_stime
            if raw.exists():
                summaries[name] = summarize(raw.read_text(), PROFILE_RATE * self.seconds)
        result = {"py_spy_cpu_pct": round(100 * spy_cpu_s / self.seconds, 1), **summaries}
        (self.out_dir / "summary.txt").write_text(format_profile(result))
        (self.out_dir / "summary.json").write_text(json.dumps(result, indent=1))
        return result


def package(frame: str) -> str:
    """`func (pkg/mod.py)` -> pkg (py-spy shortens the file name to its package part)."""
    file = frame.rsplit(" (", 1)[-1].rstrip(")")
    return file.split("/", 1)[0] if "/" in file else file


def summarize(raw: str, expected: float) -> dict[str, Any]:
    """Collapsed stacks (`a;b;c count`) -> busy %, and the top frames by own (the leaf) and
    total samples (% of the process's sampled, i.e. non-idle, stacks). Non-idle is Linux's
    state R: running, or ready and waiting for a CPU; a process at SCHED_RR (the edge, the
    caller, the loopbacks) runs when py-spy cannot, so its busy % undercounts."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    packages: dict[str, int] = {}
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        samples += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        packages[package(frames[-1])] = packages.get(package(frames[-1]), 0) + n
        for frame in set(frames):
            if package(frame) in PROJECT:
                total[frame] = total.get(frame, 0) + n

    def top(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:TOP]
        return [(k, round(100 * v / max(1, samples), 1)) for k, v in ranked]

    return {
        "samples": samples,
        "busy_pct": round(100 * samples / max(1.0, expected), 1),
        "own": top(own),
        "total_project": top(total),
        "own_by_package": top(packages),
    }


def format_profile(result: dict[str, Any]) -> str:
    lines = [
        f"py-spy at {PROFILE_RATE} Hz; busy = samples running or waiting for a CPU / samples "
        f"taken; other figures: % of the process's busy samples. py-spy's own CPU: "
        f"{result['py_spy_cpu_pct']} % of a core"
    ]
    for name, s in result.items():
        if not isinstance(s, dict):
            continue
        lines.append(f"\n{name}: busy {s['busy_pct']} % ({s['samples']} samples)")
        for title, key in (
            ("own", "own"),
            ("total (project code)", "total_project"),
            ("own by package", "own_by_package"),
        ):
            lines.append(f"  {title}:")
            lines += [f"    {pct:5.1f} %  {frame}" for frame, pct in s[key]]
    return "\n".join(lines) + "\n"


# --- callers ------------------------------------------------------------------------------------


def c_caller(port: int, calls: int, seconds: float) -> dict[str, Any]:
    figures = loadcaller.run(port, calls, seconds, warmup=1.0, realtime=True)
    figures.pop("per_call", None)
    return figures


def our_caller(
    port: int,
    calls: int,
    duration: float,
    env: dict[str, str],
    *,
    keyed: bool,
    script: str = "",
    ramp: float = 0.0,
) -> dict[str, Any]:
    """`voicebot call --calls N` as its own process at SCHED_RR 20; its JSON figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        cmd = [*VOICEBOT, "call", "--port", str(port), "--calls", str(calls)]
        cmd += ["--duration", str(duration), "--ramp", str(ramp), "--quiet", "--json", str(out)]
        if keyed:
            d = PROVIDER_DELAYS_MS
            cmd += ["--keyed", "--provider-delays", f"{d[0]},{d[1]},{d[2]}"]
        if script:
            cmd += ["--script", script]
        if loadcaller.can_realtime():
            cmd = ["chrt", "--rr", "20", *cmd]
        caller_env = {**os.environ, **env, "NATS_URL": f"nats://127.0.0.1:{env['NATS_PORT']}"}
        done = subprocess.run(
            cmd,
            check=False,
            cwd=ROOT,
            env=caller_env,
            capture_output=True,
            text=True,
            timeout=ramp + duration + 120,
        )
        if not out.exists():
            raise RuntimeError(f"voicebot call failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        record: dict[str, Any] = json.loads(out.read_text())
        (LOG_DIR / f"caller-{calls}.json").write_text(json.dumps(record, indent=1))
    figures: dict[str, Any] = record["figures"]
    return figures


# --- the parts ----------------------------------------------------------------------------------


def pacing_row(server: str, calls: int, f: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": server,
        "calls": calls,
        "lateness_p50_ms": f.get("lateness_p50_ms"),
        "lateness_p99_ms": f.get("lateness_p99_ms"),
        "lateness_max_ms": f.get("lateness_max_ms"),
        "deficit_pct": f.get("deficit_pct"),
        "gaps": f.get("gaps"),
        "bursts": f.get("bursts"),
        "dropped": f.get("dropped"),
    }


def print_pacing(row: dict[str, Any]) -> None:
    def f(k: str) -> str:
        v = row.get(k)
        return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    print(
        f"{row['calls']:>6} {row['server']:<42} {f('lateness_p50_ms'):>7} "
        f"{f('lateness_p99_ms'):>7} {f('lateness_max_ms'):>7} {f('deficit_pct'):>8} "
        f"{f('gaps'):>5} {f('bursts'):>6} {f('dropped'):>7}",
        flush=True,
    )


PACING_HEADER = (
    f"{'calls':>6} {'server':<42} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'deficit%':>8} "
    f"{'gaps':>5} {'bursts':>6} {'dropped':>7}"
)


@contextlib.contextmanager
def bare_ticker() -> Iterator[int]:
    port = free_port()
    proc = spawn([sys.executable, str(HERE / "bare_ticker.py"), "--port", str(port)], "bare.log")
    try:
        assert proc.stdout is not None
        if "READY" not in proc.stdout.readline():
            raise RuntimeError("the bare ticker did not start")
        yield port
    finally:
        stop(proc, grace_s=2)


def settle(system: System, within_s: float = 30.0) -> None:
    """Wait until the previous run's calls are gone from the edge."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if scrape(system.metrics, "voicebot_edge_active_calls") == 0:
            return
        time.sleep(0.5)


def part_pacing(args: argparse.Namespace, out: dict[str, Any]) -> None:
    print("\n--- pacing: silent calls arriving together, bench/loadcaller.c at SCHED_RR 20")
    print(PACING_HEADER, flush=True)
    rows = out.setdefault("pacing", [])
    cross = out.setdefault("crosscheck", [])
    with running_up("make-run", args.up_env) as system, bare_ticker() as bare:
        for calls in args.pacing_calls if "pacing" in args.parts else []:
            time.sleep(2)
            for server, port in (("bare uvloop ticker", bare), ("voicebot up (make run)", 0)):
                if not port:
                    settle(system)
                target = port or system.audiosocket
                row = pacing_row(server, calls, c_caller(target, calls, args.seconds))
                rows.append(row)
                print_pacing(row)
        if "crosscheck" in args.parts:
            calls = args.crosscheck_calls
            print(f"\n--- crosscheck: the built-in load caller beside loadcaller.c, {calls} calls")
            print(PACING_HEADER, flush=True)
            for server, port in (("bare uvloop ticker", bare), ("voicebot up (make run)", 0)):
                for caller in ("loadcaller.c", "voicebot call"):
                    target = port or system.audiosocket
                    settle(system)
                    if caller == "loadcaller.c":
                        f = c_caller(target, calls, args.seconds)
                    else:
                        figs = our_caller(
                            target, calls, args.seconds + 1, system.env, keyed=False, script=SILENT
                        )
                        f = {**figs["pacing"], "dropped": figs["dropped"]}
                        f["caller_tick_p99_ms"] = figs["caller_tick"]["lateness_p99_ms"]
                    row = {**pacing_row(f"{server} / {caller}", calls, f), "caller": caller}
                    row["caller_tick_p99_ms"] = f.get("caller_tick_p99_ms")
                    cross.append(row)
                    print_pacing(row)
                    time.sleep(2)


SILENT = str(LOG_DIR / "silent.txt")


def part_cloud(args: argparse.Namespace, out: dict[str, Any]) -> None:
    print("\n--- cloud path: loopback providers, speaking callers (voicebot call --keyed)")
    loop_cmd = [sys.executable, "-m", "bench.loopback_providers", "--report-every", "1000"]
    loopbacks = spawn(loop_cmd, "loopback.log")
    try:
        assert loopbacks.stdout is not None
        env_line = ""
        for _ in range(5):
            line = loopbacks.stdout.readline()
            if line.startswith("STT_PROVIDER="):
                env_line = line
                break
        if not env_line:
            raise RuntimeError("the loopback providers did not start")
        if loadcaller.can_realtime():
            for p in tree(processes(), loopbacks.pid):
                subprocess.run(["chrt", "-r", "-p", "5", str(p.pid)], check=False)
        cloud = dict(kv.split("=", 1) for kv in env_line.split())
        cloud["TTS_LRU_SIZE"] = "0"
        rows = out.setdefault("cloud", [])
        with running_up("cloud", {**cloud, **args.up_env}) as system:
            system.bench["loopbacks"] = loopbacks.pid
            for calls in [args.baseline_calls, *args.cloud_calls]:
                settle(system)
                time.sleep(2)
                profiler = None
                if args.profile and calls > args.baseline_calls:
                    profiler = Profiler(args.profile / str(calls), args.profile_seconds)
                row = cloud_run(system, calls, args.cloud_seconds, profiler)
                rows.append(row)
                print_cloud(row)
    finally:
        stop(loopbacks, grace_s=5)
        out["loopback_lag"] = (LOG_DIR / "loopback.log").read_text().splitlines()


ARRIVALS_PER_S = 10.0  # speaking calls connect at this rate (a busy hour, not one instant)
STEADY_S = 10.0  # CPU and memory are measured over this, once every call is up


def cloud_run(
    system: System, calls: int, seconds: float, profiler: Profiler | None = None
) -> dict[str, Any]:
    """`calls` speaking calls connecting at ARRIVALS_PER_S, each `seconds` long at least (the
    sample dialog takes about 33 s); profiled over the CPU window when a profiler is given."""
    idle = Usage.sample(system)
    underruns0 = scrape(system.metrics, "voicebot_edge_underruns_total")
    ramp = (calls - 1) / ARRIVALS_PER_S
    sample: dict[str, Usage] = {}

    def measure() -> None:
        time.sleep(ramp + 1.0)  # every call connected and past its welcome's set-up
        if profiler is not None:
            targets = dict(system.pids)
            targets |= {
                f"caller{i or ''}": pid for i, pid in enumerate(system.callers(processes()))
            }
            profiler.start(targets | system.bench)
        sample["a"] = Usage.sample(system)
        time.sleep(STEADY_S)
        sample["b"] = Usage.sample(system)

    sampler = threading.Thread(target=measure)
    sampler.start()
    figs = our_caller(system.audiosocket, calls, seconds, system.env, keyed=True, ramp=ramp)
    sampler.join()
    profile = profiler.finish() if profiler is not None else None
    underruns = scrape(system.metrics, "voicebot_edge_underruns_total") - underruns0
    during = usage_between(sample["a"], sample["b"])
    per_call_cpu = {k: round(v / calls, 3) for k, v in during["cpu_pct"].items()}
    per_call_mb = {
        k: round((sample["b"].rss[k] - idle.rss.get(k, 0)) / 2**20 / calls, 3)
        for k in sample["b"].rss
    }
    return {
        "calls": calls,
        "dropped": figs["dropped"],
        "completed": figs["completed"],
        "underruns": int(underruns),
        "pacing": figs["pacing"],
        "turn_latency_ms": figs["turn_latency_ms"],
        "pipeline_added_ms": figs["pipeline_added_ms"],
        "breakdown_ms": figs["breakdown_ms"],
        "welcome_ms": figs["welcome_ms"],
        "answers": figs["answers"],
        "caller_tick": figs["caller_tick"],
        "usage": during,
        "cpu_pct_per_call": per_call_cpu,
        "memory_mb_per_call": per_call_mb,
        **({"profile": profile} if profile is not None else {}),
    }


def print_cloud(r: dict[str, Any]) -> None:
    t, a, b = r["turn_latency_ms"], r["pipeline_added_ms"], r["breakdown_ms"]
    p = r["pacing"]
    u = r["usage"]
    print(
        f"{r['calls']:>4} calls: {r['completed']} completed, {r['dropped']} dropped, "
        f"{r['underruns']} under-runs; pacing p99 {p['lateness_p99_ms']} ms, gaps {p['gaps']}, "
        f"deficit {p['deficit_pct']} %",
        flush=True,
    )
    print(
        f"      turn latency p50 {t['p50_ms']} / p95 {t['p95_ms']} / p99 {t['p99_ms']} ms; "
        f"pipeline-added p50 {a['p50_ms']} / p95 {a['p95_ms']} / p99 {a['p99_ms']} ms "
        f"(goal p50 <= 25, p99 <= 60)",
        flush=True,
    )
    print(
        f"      where (p50): line end -> final {b['stt']['p50_ms']} ms (provider 300), final -> "
        f"say {b['brain']['p50_ms']} ms (provider 150), say -> first voiced frame "
        f"{b['out']['p50_ms']} ms; welcome p50 {r['welcome_ms']['p50_ms']} ms",
        flush=True,
    )
    cpu = ", ".join(f"{k} {v}" for k, v in u["cpu_pct"].items())
    print(
        f"      CPU % of a core: {cpu}; NATS {u['nats_in_per_s']} msgs/s in, "
        f"{u['nats_out_per_s']} out; the machine {u['machine_busy_pct']} % of a core "
        f"(of {100 * (os.cpu_count() or 1)})",
        flush=True,
    )
    per = ", ".join(f"{k} {v}" for k, v in r["cpu_pct_per_call"].items())
    mem = ", ".join(f"{k} {v}" for k, v in r["memory_mb_per_call"].items())
    print(f"      per call: CPU % {per}; memory MB {mem}", flush=True)
    if "profile" in r:
        print("\n" + format_profile(r["profile"]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="pacing,crosscheck,cloud")
    parser.add_argument("--pacing-calls", default="20,100,200")
    parser.add_argument("--cloud-calls", default="100,200")
    parser.add_argument("--crosscheck-calls", type=int, default=200)
    parser.add_argument(
        "--baseline-calls", type=int, default=5, help="the cloud part's unloaded baseline"
    )
    parser.add_argument("--seconds", type=float, default=11.0, help="pacing window")
    parser.add_argument(
        "--cloud-seconds", type=float, default=36.0, help="speaking calls' run after the ramp"
    )
    parser.add_argument(
        "--up-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for both `voicebot up`s, e.g. AUDIO_IN_BATCH_MS=20 (repeatable)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy every Python process over each cloud run's CPU window, e.g. var/bench/profile",
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=STEADY_S, help="how long to profile"
    )
    args = parser.parse_args()
    args.up_env = dict(kv.split("=", 1) for kv in args.up_env)
    args.parts = args.parts.split(",")
    args.pacing_calls = [int(c) for c in args.pacing_calls.split(",")]
    args.cloud_calls = [int(c) for c in args.cloud_calls.split(",") if c]
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    Path(SILENT).write_text("# silent after the UUID: no step\nwait: 3600\n")
    print(
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; callers "
        f"{'at SCHED_RR 20' if loadcaller.can_realtime() else 'at normal priority (not root)'}",
        flush=True,
    )
    out: dict[str, Any] = {"load_before": os.getloadavg(), "up_env": args.up_env}
    try:
        if "pacing" in args.parts or "crosscheck" in args.parts:
            part_pacing(args, out)
        if "cloud" in args.parts:
            part_cloud(args, out)
    finally:
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
