"""`voicebot up`: the whole system in one process, for development.

Starts its own nats-server and PostgreSQL under `var/` when NATS_URL / DATABASE_URL are unset,
then the edge, STT worker, brain, TTS worker and archiver, each with its own NATS connection as
if it were its own process. Ctrl-C stops the services, then the servers it started.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from events import env
from events.bus import Bus
from events.runtime import start_metrics, wait_for_signal
from events.streams import ensure_streams
from voicebot.servers import NatsServer, PostgresServer, ServerError, port_in_use

log = logging.getLogger("voicebot.up")

PROJECT = Path(__file__).resolve().parent.parent


class UpError(RuntimeError):
    """A start-up problem the user can fix; printed without a traceback."""


@dataclass
class Stack:
    data_dir: Path
    nats: NatsServer | None = None
    postgres: PostgresServer | None = None
    nats_url: str = ""
    database_url: str = ""
    notes: list[str] = field(default_factory=list)


def _lock(data_dir: Path) -> Path:
    """Refuse a second `voicebot up` on the same folder, clearly."""
    lock = data_dir / "up.pid"
    if lock.exists():
        try:
            pid = int(lock.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            pass  # stale: the previous run died without cleaning up
        except PermissionError:
            raise UpError(
                f"another voicebot up is running (pid {lock.read_text().strip()})"
            ) from None
        else:
            if pid != os.getpid():
                raise UpError(
                    f"voicebot up is already running from this folder (pid {pid}); "
                    f"stop it with Ctrl-C (or `kill {pid}`) first"
                )
    lock.write_text(str(os.getpid()))
    return lock


async def _nats_usable(url: str) -> bool:
    try:
        nc = await nats.connect(
            url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False
        )
    except Exception:
        return False
    try:
        await nc.jetstream().account_info()
        return True
    except Exception:
        return False
    finally:
        await nc.close()


def _postgres_reachable_by(user: str, path: Path) -> bool:
    """Can the unprivileged user that runs PostgreSQL walk down to `path`?"""
    probe = path if path.exists() else path.parent
    result = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-x", str(probe)],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0


async def start_servers(data_dir: Path) -> Stack:
    stack = Stack(data_dir=data_dir)
    nats_url = env.get_opt("NATS_URL")
    if nats_url:
        stack.nats_url = nats_url
        stack.notes.append(f"NATS: {nats_url} (NATS_URL)")
    else:
        port = env.get_int("NATS_PORT", 4222)
        url = f"nats://127.0.0.1:{port}"
        if port_in_use(port):
            if not await _nats_usable(url):
                raise UpError(
                    f"port {port} is in use by something that is not a NATS server with "
                    "JetStream; set NATS_PORT to start ours elsewhere, or NATS_URL to use yours"
                )
            stack.notes.append(f"NATS: {url} (reusing the server already listening)")
        else:
            conf = PROJECT / "nats.conf"
            stack.nats = NatsServer(
                store_dir=data_dir / "nats", port=port, config=conf if conf.exists() else None
            )
            await asyncio.to_thread(stack.nats.start)
            stack.notes.append(f"NATS: {url} (embedded, JetStream store {data_dir / 'nats'})")
        stack.nats_url = url
    os.environ["NATS_URL"] = stack.nats_url

    database_url = env.get_opt("DATABASE_URL")
    if database_url:
        stack.database_url = database_url
        stack.notes.append("PostgreSQL: DATABASE_URL")
    else:
        port = env.get_int("PG_PORT", 5432)
        pg_dir = data_dir / "pg"
        if os.geteuid() == 0 and not _postgres_reachable_by("postgres", data_dir):
            digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:8]
            pg_dir = Path("/var/tmp") / f"voicebot-{digest}" / "pg"
            pg_dir.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(pg_dir.parent, 0o755)
            stack.notes.append(
                f"note: PostgreSQL runs as user 'postgres', which cannot enter {data_dir}; "
                f"its data is in {pg_dir} instead"
            )
        pg = PostgresServer(data_dir=pg_dir, port=port)
        if port_in_use(port):
            stack.database_url = pg.url
            if not await _pg_usable(pg.url):
                raise UpError(
                    f"port {port} is in use and {pg.url} does not answer; set PG_PORT to start "
                    "ours elsewhere, or DATABASE_URL to use your server"
                )
            stack.notes.append(f"PostgreSQL: {pg.url} (reusing the server already listening)")
        else:
            if os.geteuid() == 0:
                stack.notes.append("note: running as root, so PostgreSQL runs as user 'postgres'")
            await asyncio.to_thread(pg.start)
            stack.postgres = pg
            stack.notes.append(f"PostgreSQL: {pg.url} (embedded, data {pg_dir})")
        stack.database_url = pg.url
    os.environ["DATABASE_URL"] = stack.database_url
    from brain.store import apply_schema

    await apply_schema(stack.database_url)
    return stack


async def _pg_usable(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


def stop_servers(stack: Stack) -> None:
    if stack.postgres is not None:
        stack.postgres.stop()
    if stack.nats is not None:
        stack.nats.stop()


class EdgeProcess:
    """The edge in its own process (`python -m edge`): the pipeline's CPU (speech recognition,
    synthesis) cannot then delay its 20 ms ticker, and it paces at real-time priority when the
    system allows it (EDGE_RT_PRIORITY). Measured in bench/edge_pacing.py: in-process, p99
    lateness reached tens of milliseconds at 100 calls; in its own real-time process, under 2 ms.
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edge",
            start_new_session=True,  # see NatsServer.start
        )
        deadline = time.monotonic() + timeout_s
        # Asked through the HTTP API, which starts after the AudioSocket server: probing port
        # 9090 itself would count as a peer that never sent its UUID.
        while not await self._ready():
            if self.proc.returncode is not None:
                raise UpError(f"the edge exited with code {self.proc.returncode} (log above)")
            if time.monotonic() > deadline:
                raise UpError(f"the edge was not ready within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)

    async def _ready(self) -> bool:
        """GET /ready on the edge's HTTP API: 200 once it listens and has NATS."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.config.http_port), timeout=1
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), timeout=2)
            return status.split()[1:2] == [b"200"]
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    async def exited(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM: the edge lets calls finish (their goodbye plays), then hangs up the rest."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=grace_s)
        except TimeoutError:
            log.warning("the edge did not stop in %.0f s: killing it", grace_s)
            self.proc.kill()
            await self.proc.wait()


@dataclass
class Services:
    """The services of one `voicebot up`, in start order, with what they share."""

    edge_cfg: Any
    brain_cfg: Any
    tts_cfg: Any
    store: Any
    buses: list[Bus] = field(default_factory=list)
    started: list[Any] = field(default_factory=list)
    edge: EdgeProcess | None = None


def _check_ports(edge_cfg: Any, workers_metrics_port: int) -> None:
    for name, port in (
        ("AUDIOSOCKET_PORT", edge_cfg.port),
        ("HTTP_PORT", edge_cfg.http_port),
        ("METRICS_PORT", edge_cfg.metrics_port),
        ("WORKERS_METRICS_PORT", workers_metrics_port),
    ):
        if port and port_in_use(port):
            raise UpError(
                f"port {port} ({name}) is already in use: is another voicebot running? "
                f"Stop it or set {name} in .env"
            )


async def _start(stack: Stack, svc: Services) -> None:
    """Start the workers, then the edge, so the edge never admits a call nobody serves."""
    from archiver.config import ArchiverConfig
    from archiver.projector import Projector
    from brain.worker import BrainWorker
    from stt_worker.config import SttConfig
    from stt_worker.worker import SttWorker
    from tts_worker.worker import TtsWorker

    async def bus_for(service: str) -> Bus:
        b = await Bus.connect(stack.nats_url, service)
        svc.buses.append(b)
        return b

    await ensure_streams((await bus_for("up")).js)
    tts = TtsWorker(svc.tts_cfg, await bus_for("tts_worker"))
    stt = SttWorker(SttConfig.from_env(), await bus_for("stt_worker"))
    brain = BrainWorker(svc.brain_cfg, await bus_for("brain"), svc.store)
    archiver = Projector(ArchiverConfig.from_env(), await bus_for("archiver"))
    for service in (tts, stt, brain, archiver):
        await service.start()
        svc.started.append(service)
    svc.edge = EdgeProcess(svc.edge_cfg)
    await svc.edge.start()


async def _stop(svc: Services) -> None:
    if svc.edge is not None:
        await svc.edge.stop()  # first: calls in progress get their goodbye
    for service in reversed(svc.started):
        try:
            await service.stop()
        except Exception:
            log.exception("stopping %s failed", type(service).__name__)
    if svc.store is not None:
        await svc.store.close()
    for b in svc.buses:
        await b.close()


async def run_services(
    stack: Stack, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
) -> None:
    """Start the services, print the banner, run until a signal (or `stop`, or the edge dies)."""
    from brain.config import BrainConfig
    from brain.store import Store
    from edge.config import EdgeConfig
    from tts_worker.config import TtsConfig

    edge_cfg = EdgeConfig.from_env()
    workers_metrics_port = env.get_int("WORKERS_METRICS_PORT", 9092, minimum=0)
    svc = Services(edge_cfg, BrainConfig.from_env(), TtsConfig.from_env(), store=None)
    _check_ports(edge_cfg, workers_metrics_port)
    try:
        svc.store = await Store.connect(stack.database_url)
        await _start(stack, svc)
        if workers_metrics_port:
            start_metrics(workers_metrics_port)
        print(banner(stack, svc, workers_metrics_port), flush=True)
        if ready is not None:
            ready.set()
        assert svc.edge is not None
        waiters = {
            asyncio.ensure_future(stop.wait() if stop is not None else wait_for_signal()),
            asyncio.ensure_future(svc.edge.exited()),
        }
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if svc.edge.proc is not None and svc.edge.proc.returncode is not None:
            raise UpError(f"the edge exited with code {svc.edge.proc.returncode} (log above)")
        print("Stopping: calls in progress get their goodbye, then the servers stop...", flush=True)
    finally:
        await _stop(svc)


def banner(stack: Stack, svc: Services, workers_metrics_port: int) -> str:
    tts, stt = svc.started[0], svc.started[1]
    edge = svc.edge_cfg
    line = "=" * 60
    rows = [
        line,
        f"AudioSocket Server started on {edge.host}:{edge.port}",
        f"Cache loaded: {tts.phrases_loaded} phrases",
        f"Process pool workers: {tts.pool_workers} (TTS) + {stt.pool_workers} (STT)",
        f"Max concurrent calls: {edge.max_concurrent_calls}",
        f"HTTP API: http://{edge.http_host}:{edge.http_port}   Metrics: :{edge.metrics_port}"
        f"/metrics (edge), :{workers_metrics_port}/metrics (workers)",
        f"Providers: STT {stt.provider_name} · NLU {svc.brain_cfg.nlu_provider} · "
        f"TTS {svc.tts_cfg.provider}",
        *stack.notes,
        "Place a test call:  .venv/bin/voicebot call",
        "Trace calls live:   .venv/bin/voicebot trace",
        line,
    ]
    return "\n".join(rows)


async def up(data_dir: Path) -> int:
    """Run everything until Ctrl-C; `data_dir` must exist (the CLI creates it)."""
    try:
        lock = _lock(data_dir)
    except UpError as e:
        print(f"voicebot up: {e}")
        return 1
    stack: Stack | None = None
    try:
        stack = await start_servers(data_dir)
        await run_services(stack)
        return 0
    except (UpError, ServerError, env.ConfigError) as e:
        print(f"voicebot up: {e}")
        return 1
    finally:
        if stack is not None:
            await asyncio.to_thread(stop_servers, stack)
        lock.unlink(missing_ok=True)
