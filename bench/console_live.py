"""Does a live console page cost the callers anything? The edge's pacing with 100 calls, with
and without a browser's live stream open on the console, on the same `voicebot up`.

    .venv/bin/python bench/console_live.py [--calls 100] [--seconds 6] [--repeat 2] [--json F]

Starts a nats-server and `voicebot up` (offline providers, the console on a spare port with a
token), then measures `voicebot up`'s own edge with bench/loadcaller.c exactly as
bench/edge_pacing.py's `up` server does (the caller under SCHED_RR, a feeder playing the bot),
alternating runs without and with a live-page client: an SSE reader of /api/live in this
process, as a browser's EventSource reads it, counting the updates and the calls it showed.
Figures: edge_pacing.py's (lateness p50/p99/max, drift, deficit, bursts, gaps, dropped,
cpu of the edge and of the pipeline, the console included), plus the live page's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import edge_pacing  # noqa: E402
import loadcaller  # noqa: E402

from voicebot.servers import NatsServer, free_port  # noqa: E402

TOKEN = "bench-console-token"


class LivePage:
    """A browser's live stream: reads /api/live until stopped, counting what it got."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.updates = 0
        self.bytes = 0
        self.calls: dict[str, bool] = {}  # call id -> in progress
        self.most_in_progress = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="live-page", daemon=True)
        self._conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> LivePage:
        self._thread.start()
        if not self.connected.wait(10):
            raise RuntimeError("the console's live stream did not answer")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._conn is not None and self._conn.sock is not None:
            self._conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def _read(self) -> None:
        conn = self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/api/live", headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"/api/live answered {response.status}")
        self.connected.set()
        event = ""
        try:
            while not self._stop.is_set():
                line = response.readline()
                if not line:
                    return
                self.bytes += len(line)
                text = line.decode("utf-8", "replace").rstrip("\n")
                if text.startswith("event: "):
                    event = text[7:]
                elif text.startswith("data: ") and event in ("snapshot", "update"):
                    self.updates += 1
                    data = json.loads(text[6:])
                    for c in data["calls"]:
                        self.calls[c["call_id"]] = c["ended_ts"] is None
                    for gone in data.get("gone", []):
                        self.calls.pop(gone, None)
                    now = sum(self.calls.values())
                    self.most_in_progress = max(self.most_in_progress, now)
        except OSError:
            return  # stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeat", type=int, default=2, help="pairs of runs (without, with)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(
        f"load caller: {loadcaller.build() or 'Python fallback'}"
        f"{' under SCHED_RR' if loadcaller.can_realtime() else ''}; {os.cpu_count()} CPUs"
    )
    console_port = free_port()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        nats = NatsServer(store_dir=Path(tmp) / "nats", port=free_port())
        nats.start()
        stack.callback(nats.stop)
        pipeline = edge_pacing.start_pipeline(
            nats.url,
            stack,
            extra_env={
                "CONSOLE_PORT": str(console_port),
                "CONSOLE_METRICS_PORT": "0",
                "CONSOLE_TOKEN": TOKEN,
            },
        )
        # live: a live page was reading /api/live; updates: the SSE messages it got; shown:
        # the most calls in progress it showed at once. cpu%: the whole `voicebot up`, the
        # console among its processes.
        print(f"{'live':>8} {'updates':>8} {'shown':>8} " + edge_pacing.HEADER, flush=True)
        for _ in range(args.repeat):
            for live in (False, True):
                page = LivePage(console_port) if live else None
                with page if page is not None else ExitStack():
                    r = edge_pacing.measure(
                        "up",
                        args.calls,
                        args.seconds,
                        nats=nats,
                        talk=True,
                        pipeline=pipeline,
                    )
                    time.sleep(0.5)  # the calls' last updates
                r["live_page"] = live
                r["live_updates"] = page.updates if page else None
                r["live_calls_in_progress_max"] = page.most_in_progress if page else None
                r["live_bytes"] = page.bytes if page else None
                results.append(r)
                seen = (
                    f"{r['live_updates']:>8} {r['live_calls_in_progress_max']:>8}"
                    if live
                    else f"{'-':>8} {'-':>8}"
                )
                print(f"{'yes' if live else 'no':>8} {seen} " + edge_pacing.row(r), flush=True)
    summary = summarize(results)
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "summary": summary}, indent=2))


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's mean without and with the live page, side by side."""
    out: dict[str, Any] = {}
    for key in (
        "lateness_p50_ms",
        "lateness_p99_ms",
        "lateness_max_ms",
        "deficit_pct",
        "bursts",
        "gaps",
        "dropped",
        "server_cpu_pct",
        "pipeline_cpu_pct",
    ):
        for live in (False, True):
            values = [r[key] for r in results if r["live_page"] is live and r.get(key) is not None]
            out[f"{key}_{'live' if live else 'baseline'}"] = (
                round(sum(values) / len(values), 3) if values else None
            )
    return out


if __name__ == "__main__":
    main()
