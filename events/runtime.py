"""Process plumbing shared by every service's `__main__`: logging, signals, metrics, uvloop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Final

from prometheus_client import start_http_server

from events import env

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    for noisy in ("nats", "asyncio", "websockets", "httpx", "httpcore", "openai", "groq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep asyncio as a fallback
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def start_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve Prometheus metrics of this process (all services share the default registry)."""
    start_http_server(port, addr=host)


async def wait_for_signal() -> str:
    """Return the name of the first SIGINT/SIGTERM received."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[str] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not got.done():
            got.set_result(sig.name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await got
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def run_service(name: str) -> None:
    logging.getLogger(name).info("%s running; Ctrl-C to stop", name)
    sig = await wait_for_signal()
    logging.getLogger(name).info("%s stopping on %s", name, sig)


def mark_ready() -> None:
    """Tell whoever started this process that it is ready: `voicebot up` waits for the file
    named by VOICEBOT_READY_FILE (written once the service connected and loaded its models)."""
    path = env.get_opt("VOICEBOT_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()), encoding="ascii")


PARENT_CHECK_S: Final = 1.0


def exit_with_parent(parent_pid: int) -> None:
    """Initializer of a service's process pool: the worker process ends once the service that
    started it is gone. A pool process keeps both ends of its task queue, so it never sees the
    queue close: after a kill -9 of the service (or the OOM killer) it waited for ever, an
    orphan holding its memory (236 MB per Whisper process) and its inherited stdout."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
