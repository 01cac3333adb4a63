"""Outbound pacing of the edge as Asterisk would see it, against a hand-rolled baseline.

    .venv/bin/python bench/edge_pacing.py --calls 20,100,200 --seconds 10 [--speak] [--json F]

Starts a nats-server, then for each server kind (`edge`: edge.server.EdgeServer with its shared
ticker on uvloop; `naive`: one task per call with `asyncio.sleep(0.02)`, the usual hand-rolled
script) and each call count: the server runs in its own process, and this process is the
caller: one epoll loop, no asyncio, timestamps on every recv. With --speak each caller also
sends a 320 B frame every 20 ms from one shared timer, as a talking caller does.

Printed per run: inter-frame lateness (interval - 20 ms, positive part) p50 / p99 / max in ms,
frame deficit (frames missing against real time over the window), bursts (frames arriving
< 5 ms after the previous one), and the server process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

FRAME = 320
MSG = 3 + FRAME
PERIOD = 0.020
WARMUP_S = 1.0


# --- servers (run in a child process) -----------------------------------------------------------


async def serve_edge(port: int, nats_url: str, batch_ms: int) -> None:
    import dataclasses

    from edge.config import EdgeConfig
    from edge.server import EdgeServer
    from events.bus import Bus
    from events.streams import ensure_streams

    bus = await Bus.connect(nats_url, "edge-bench")
    await ensure_streams(bus.js)
    cfg = dataclasses.replace(
        EdgeConfig.from_env({}),
        host="127.0.0.1",
        port=port,
        max_concurrent_calls=1000,
        inbound_max_ahead_s=5.0,
        audio_in_batch_ms=batch_ms,
    )
    server = EdgeServer(cfg, bus)
    await server.start()
    print("READY", flush=True)
    await asyncio.Event().wait()


async def serve_naive(port: int) -> None:
    header = b"\x10\x01\x40"

    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(19)

        async def drain_input() -> None:
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass

        reading = asyncio.create_task(drain_input())
        try:
            while not reading.done():
                writer.write(header + bytes(FRAME))
                await asyncio.sleep(PERIOD)
        finally:
            writer.close()

    server = await asyncio.start_server(call, "127.0.0.1", port)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


# --- the caller -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def speak_until(socks: list[socket.socket], end: float) -> None:
    speech = b"\x10\x01\x40" + bytes(FRAME)
    next_send = time.perf_counter()
    while next_send < end:
        for s in socks:
            with contextlib.suppress(BlockingIOError, ConnectionError):
                s.send(speech)
        next_send += PERIOD
        time.sleep(max(0.0, next_send - time.perf_counter()))


def run_calls(port: int, calls: int, seconds: float, speak: bool, pid: int) -> dict[str, float]:
    sel = selectors.EpollSelector()
    socks: list[socket.socket] = []
    bufs: dict[int, int] = {}
    arrivals: dict[int, list[float]] = {}
    for _ in range(calls):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"\x01\x00\x10" + uuid.uuid4().bytes)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
        bufs[s.fileno()] = 0
        arrivals[s.fileno()] = []
    start = time.perf_counter()
    window_start = start + WARMUP_S
    end = window_start + seconds
    # The talking side is a forked child sharing the sockets: its sends never delay our recv
    # timestamps.
    talker = os.fork() if speak else -1
    if talker == 0:
        speak_until(socks, end)
        os._exit(0)
    cpu0 = cpu1 = 0.0
    measuring = False
    while True:
        now = time.perf_counter()
        if not measuring and now >= window_start:
            cpu0, measuring = cpu_seconds(pid), True
        if now >= end:
            cpu1 = cpu_seconds(pid)
            break
        for key, _ in sel.select(max(0.0, end - now)):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except (BlockingIOError, ConnectionError):
                continue
            t = time.perf_counter()
            fd = sock.fileno()
            if not data:
                sel.unregister(sock)
                continue
            total = bufs[fd] + len(data)
            frames, bufs[fd] = divmod(total, MSG)
            if t >= window_start:
                arrivals[fd].extend([t] * frames)
    if talker > 0:
        os.waitpid(talker, 0)
    for s in socks:
        s.close()
    return {
        "calls": calls,
        **summarise(arrivals, seconds),
        "server_cpu_pct": 100 * (cpu1 - cpu0) / seconds,
    }


def summarise(arrivals: dict[int, list[float]], seconds: float) -> dict[str, float]:
    late: list[float] = []
    deficit_frames = 0
    expected_frames = 0
    bursts = 0
    for times in arrivals.values():
        expected = int(seconds / PERIOD)
        expected_frames += expected
        deficit_frames += max(0, expected - len(times))
        for a, b in itertools.pairwise(times):
            gap = b - a
            late.append(max(0.0, gap - PERIOD))
            bursts += gap < 0.005
    late.sort()
    return {
        "lateness_p50_ms": percentile(late, 0.50) * 1000,
        "lateness_p99_ms": percentile(late, 0.99) * 1000,
        "lateness_max_ms": (late[-1] if late else float("nan")) * 1000,
        "deficit_pct": 100 * deficit_frames / max(1, expected_frames),
        "bursts": bursts,
    }


def start_server(kind: str, port: int, nats_url: str, batch_ms: int) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        __file__,
        f"--serve-{kind}",
        str(port),
        "--nats",
        nats_url,
        "--batch-ms",
        str(batch_ms),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "READY" not in line:
        proc.kill()
        raise RuntimeError(f"{kind} server did not start")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", default="20,100,200")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--speak", action="store_true")
    parser.add_argument("--servers", default="edge,naive")
    parser.add_argument("--json")
    parser.add_argument("--serve-edge", type=int)
    parser.add_argument("--serve-naive", type=int)
    parser.add_argument("--nats", default="")
    parser.add_argument("--batch-ms", type=int, default=20, help="the edge's AUDIO_IN_BATCH_MS")
    args = parser.parse_args()
    if args.serve_edge or args.serve_naive:
        import uvloop

        if args.serve_edge:
            uvloop.run(serve_edge(args.serve_edge, args.nats, args.batch_ms))
        else:
            uvloop.run(serve_naive(args.serve_naive))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from voicebot.servers import NatsServer, free_port

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        nats = NatsServer(store_dir=Path(tmp) / "nats", port=free_port())
        nats.start()
        try:
            for kind in args.servers.split(","):
                for calls in (int(c) for c in args.calls.split(",")):
                    port = free_port()
                    proc = start_server(kind, port, nats.url, args.batch_ms)
                    try:
                        r = run_calls(port, calls, args.seconds, args.speak, proc.pid)
                    finally:
                        proc.kill()
                        proc.wait()
                    r = {"server": kind, "speak": args.speak, **r}
                    results.append(r)
                    print(
                        f"{kind:5} calls={calls:3} lateness p50={r['lateness_p50_ms']:.2f} ms "
                        f"p99={r['lateness_p99_ms']:.2f} ms max={r['lateness_max_ms']:.2f} ms "
                        f"deficit={r['deficit_pct']:.2f}% bursts={r['bursts']} "
                        f"cpu={r['server_cpu_pct']:.0f}%",
                        flush=True,
                    )
        finally:
            nats.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
