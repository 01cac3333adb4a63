"""Runs the C load caller (bench/loadcaller.c), building it on first use.

    .venv/bin/python bench/loadcaller.py --port P [--calls N] [--seconds S] [--speak]

`run(...)` returns the caller's JSON figures (definitions at the top of loadcaller.c). The binary
is compiled with the system `cc` into var/bench/, named by the source's hash so an edited source
is rebuilt. Without a compiler it falls back to a Python epoll caller with the same figures: good
enough at 20 calls, itself the bottleneck at 100 (the result says which caller measured).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "loadcaller.c"
CACHE_DIR = HERE.parent / "var" / "bench"
FRAME = 320
MSG = 3 + FRAME
PERIOD_S = 0.020
BURST_S = 0.005


def build(cache_dir: Path = CACHE_DIR) -> Path | None:
    """The compiled caller, built if needed; None when there is no C compiler."""
    digest = hashlib.sha1(SOURCE.read_bytes()).hexdigest()[:12]
    binary = cache_dir / f"loadcaller-{digest}"
    if binary.exists():
        return binary
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(tmp), str(SOURCE), "-lm"],
        check=True,
        timeout=120,
    )
    tmp.replace(binary)  # atomic: a concurrent run never executes a half-written file
    return binary


def run(
    port: int,
    calls: int,
    seconds: float,
    *,
    warmup: float = 2.0,
    speak: bool = False,
    call_ids: list[str] | None = None,
    host: str = "127.0.0.1",
    realtime: bool = False,
) -> dict[str, Any]:
    """Place `calls` calls on host:port and return the figures of the measurement window.

    `realtime` runs the caller under SCHED_RR (root): on a loaded 2-core machine a caller at
    normal priority waits for the CPU itself and stamps frames late, blaming the server.
    """
    binary = build()
    if binary is None:
        fallback = python_caller(
            host, port=port, calls=calls, seconds=seconds, warmup=warmup, call_ids=call_ids
        )
        return {**fallback, "caller": "python"}
    with tempfile.NamedTemporaryFile("w", suffix=".uuids") as ids:
        ids.write("\n".join(call_ids or []) + "\n")
        ids.flush()
        cmd = ["chrt", "--rr", "20"] if realtime and can_realtime() else []
        cmd += [str(binary), "--host", host, "--port", str(port), "--calls", str(calls)]
        cmd += ["--seconds", str(seconds), "--warmup", str(warmup), "--uuids", ids.name]
        if speak:
            cmd.append("--speak")
        done = subprocess.run(
            cmd, capture_output=True, text=True, check=True, timeout=warmup + seconds + 60
        )
    figures: dict[str, Any] = json.loads(done.stdout)
    return {**figures, "caller": "c", "caller_realtime": cmd[0] == "chrt"}


def can_realtime() -> bool:
    """Whether SCHED_RR is ours to use (root, or CAP_SYS_NICE with an rtprio limit)."""
    if shutil.which("chrt") is None:
        return False
    try:
        return (
            subprocess.run(
                ["chrt", "--rr", "1", "true"], check=False, capture_output=True, timeout=10
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


# --- the fallback -------------------------------------------------------------------------------


def python_caller(
    host: str,
    *,
    port: int,
    calls: int,
    seconds: float,
    warmup: float,
    call_ids: list[str] | None,
) -> dict[str, Any]:
    """The same measurement in Python (one epoll loop); the caller's frames are silence."""
    ids = [uuid.UUID(c) for c in call_ids or []]
    ids += [uuid.uuid4() for _ in range(calls - len(ids))]
    sel = selectors.EpollSelector()
    socks: list[socket.socket] = []
    pending: dict[int, int] = {}
    arrivals: dict[int, list[float]] = {}
    dropped = 0
    for call_id in ids[:calls]:
        s = socket.create_connection((host, port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"\x01\x00\x10" + call_id.bytes)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
        pending[s.fileno()] = 0
        arrivals[s.fileno()] = []
    frame = b"\x10\x01\x40" + bytes(FRAME)
    start = time.monotonic()
    w0, w1 = start + warmup, start + warmup + seconds
    next_send = start + PERIOD_S
    while (now := time.monotonic()) < w1:
        if now >= next_send:
            for s in socks:
                with contextlib.suppress(BlockingIOError, ConnectionError):
                    s.send(frame)
            next_send += PERIOD_S
        for key, _ in sel.select(max(0.0, min(next_send, w1) - now)):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            t = time.monotonic()
            if not data:
                sel.unregister(sock)
                dropped += 1
                continue
            # The server only sends 323 B audio messages here, so counting bytes counts frames.
            frames, pending[sock.fileno()] = divmod(pending[sock.fileno()] + len(data), MSG)
            if w0 <= t < w1:
                arrivals[sock.fileno()].extend([t] * frames)
    for s in socks:
        s.close()
    return {
        "calls": calls,
        "seconds": seconds,
        **summarise(arrivals.values(), seconds),
        "dropped": dropped,
    }


def summarise(per_call: Any, seconds: float) -> dict[str, Any]:
    late: list[float] = []
    expected_total = deficit = bursts = 0
    expected = round(seconds / PERIOD_S)
    for times in per_call:
        expected_total += expected
        deficit += expected - len(times)  # signed: edge jitter cancels over the calls
        for a, b in itertools.pairwise(times):
            late.append(max(0.0, b - a - PERIOD_S))
            bursts += b - a < BURST_S
    late.sort()

    def pct(q: float) -> float | None:
        return late[min(len(late) - 1, int(q * len(late)))] * 1000 if late else None

    return {
        "lateness_p50_ms": pct(0.50),
        "lateness_p99_ms": pct(0.99),
        "lateness_max_ms": late[-1] * 1000 if late else None,
        "deficit_pct": 100 * max(0, deficit) / max(1, expected_total),
        "bursts": bursts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--speak", action="store_true")
    args = parser.parse_args()
    figures = run(
        args.port, args.calls, args.seconds, warmup=args.warmup, speak=args.speak, host=args.host
    )
    figures.pop("per_call", None)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
