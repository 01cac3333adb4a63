"""Process plumbing shared by every service's `__main__`: the same start-up, logging, signals,
exit codes, and one HTTP port per service serving `/metrics` (Prometheus) and `/health`.

Exit codes, the same for every service: 0 stopped on a signal, 1 failed while running (or a
port already taken), 2 configuration error (the message names the variable).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Final, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from events import env

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2

# The event loop beats this often; /health fails when it has not beaten for STALL_S (a loop
# blocked by a bug, a frozen process): the thread serving /health still answers then.
BEAT_S: Final = 0.5
STALL_S: Final = 5.0

C = TypeVar("C")


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


class Health:
    """What `/health` answers: 200 once the service is ready, its event loop is turning and
    every check passes (e.g. connected to NATS); 503 with the reasons otherwise. Read from the
    HTTP server's thread: the checks only read attributes."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.is_ready = False
        self._checks: dict[str, Callable[[], bool]] = {}
        self._beat = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def check(self, name: str, probe: Callable[[], bool]) -> None:
        self._checks[name] = probe

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beating(), name="health-beat")

    def ready(self) -> None:
        """The service is serving: /health may say so, and whoever started it is told."""
        self.is_ready = True
        mark_ready()

    async def _beating(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(BEAT_S)

    def report(self) -> tuple[bool, dict[str, Any]]:
        problems = []
        if not self.is_ready:
            problems.append("starting")
        stalled = time.monotonic() - self._beat
        if self._task is not None and stalled > STALL_S:
            problems.append(f"event loop stalled for {stalled:.1f} s")
        checks = {}
        for name, probe in self._checks.items():
            try:
                ok = bool(probe())
            except Exception:
                ok = False
            checks[name] = ok
            if not ok:
                problems.append(f"{name} failing")
        body = {
            "service": self.service,
            "status": "ok" if not problems else "unhealthy",
            "pid": os.getpid(),
            "checks": checks,
            "problems": problems,
        }
        return not problems, body


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Prometheus scrapes every 15 s: not worth a log line each."""


def serve_metrics(port: int, health: Health, host: str = "0.0.0.0") -> WSGIServer | None:
    """`/metrics` (the process's Prometheus registry) and `/health` on one port, from a
    daemon thread (prometheus_client's own server, plus one route); 0: not served."""
    if not port:
        return None
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == "/health":
            ok, body = health.report()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(body).encode() + b"\n"]
        return metrics(environ, start_response)

    httpd = make_server(host, port, app, _Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return httpd


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


def mark_ready() -> None:
    """Tell whoever started this process that it is ready: `voicebot up` waits for the file
    named by VOICEBOT_READY_FILE (written once the service connected and loaded its models)."""
    path = env.get_opt("VOICEBOT_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()), encoding="ascii")


def main(
    service: str,
    read_config: Callable[[], C],
    run: Callable[[C], Coroutine[Any, Any, None]],
    *,
    before_loop: Callable[[C], None] | None = None,
    config_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Every service's `__main__`: `.env`, logging, the validated config (exit 2 naming the
    variable), then `run(config)` on uvloop until a signal. `config_errors` are failures of
    the set-up the operator must fix (a missing model): exit 2 as well."""
    import uvloop

    log = logging.getLogger(service)
    try:
        env.load_dotenv()
        setup_logging(env.get_str("LOG_LEVEL", "INFO"))
        config = read_config()
    except env.ConfigError as e:
        setup_logging()
        log.error("%s: configuration error: %s", service, e)
        return EXIT_CONFIG
    if before_loop is not None:
        before_loop(config)
    try:
        uvloop.run(run(config))
    except config_errors as e:
        log.error("%s: cannot start: %s", service, e)
        return EXIT_CONFIG
    except OSError as e:
        log.error("%s: cannot start: %s", service, e)
        return EXIT_FAILED
    except Exception:
        log.exception("%s failed", service)
        return EXIT_FAILED
    return EXIT_OK


def yield_cpu(niceness: int) -> None:
    """Run at a lower CPU priority (`nice`): for the services whose work may wait (the
    archiver's projection, the console), so that on a busy machine the call path (STT, brain,
    TTS) gets the CPU first. They catch up as soon as it is idle."""
    if niceness > 0:
        os.nice(niceness)


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
