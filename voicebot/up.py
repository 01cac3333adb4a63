"""`voicebot up`: the whole system on one machine, in its production shape.

Starts its own nats-server and PostgreSQL under `var/` when NATS_URL / DATABASE_URL are unset,
then every service as its own process (`python -m <service>`: TTS, STT, brain, archiver and
edge; several instances of a worker with `--scale brain=2,...`): the edge last, once the
workers are ready. A process that exits is restarted (a worker's calls were taken over
meanwhile). Ctrl-C stops the edge first (calls get
their goodbye), then the workers, then the servers it started.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from events import env
from events.auth import Login
from events.bus import Bus
from events.runtime import wait_for_signal
from events.streams import ensure_streams
from voicebot.processes import (
    CONSOLE,
    METRICS_PORTS,
    WORKERS,
    ServiceProcess,
    metrics_port,
    parse_scale,
)
from voicebot.secrets import ensure_nats_passwords
from voicebot.servers import NatsCluster, NatsServer, PostgresServer, ServerError, port_in_use

log = logging.getLogger("voicebot.up")

PROJECT = Path(__file__).resolve().parent.parent


class UpError(RuntimeError):
    """A start-up problem the user can fix; printed without a traceback."""


@dataclass
class Stack:
    data_dir: Path
    nats: NatsServer | NatsCluster | None = None
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
    credentials = Login.from_env("admin").connect_options(url)
    try:
        nc = await nats.connect(
            url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False, **credentials
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


async def _start_nats(stack: Stack, *, nats_cluster: bool) -> None:
    data_dir = stack.data_dir
    nats_url = env.get_opt("NATS_URL")
    if not nats_url:
        # Our own server enforces nats-auth.conf, as production does: every service connects
        # as its own user and may publish only what the contract lets it say.
        secrets_file = data_dir / "secrets.env"
        made = ensure_nats_passwords(secrets_file)
        stack.notes.append(
            "NATS users: one per service (nats-auth.conf), passwords from .env or "
            f"{secrets_file}{' (generated now)' if made else ''}"
        )
    if nats_url:
        stack.nats_url = nats_url
        stack.notes.append(f"NATS: {nats_url} (NATS_URL)")
    elif nats_cluster:
        await _start_cluster(stack)
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
                store_dir=data_dir / "nats",
                port=port,
                config=conf if conf.exists() else None,
                monitor_port=env.get_int("NATS_MONITOR_PORT", 0, minimum=0),
            )
            await asyncio.to_thread(stack.nats.start)
            stack.notes.append(f"NATS: {url} (embedded, JetStream store {data_dir / 'nats'})")
        stack.nats_url = url
    os.environ["NATS_URL"] = stack.nats_url


async def start_servers(data_dir: Path, *, nats_cluster: bool = False) -> Stack:
    stack = Stack(data_dir=data_dir)
    try:
        await _start_nats(stack, nats_cluster=nats_cluster)
        await _start_postgres(stack)
    except BaseException:
        # Nothing of a failed start stays behind (a NATS started before PostgreSQL failed).
        await asyncio.to_thread(stop_servers, stack)
        raise
    return stack


async def _start_postgres(stack: Stack) -> None:
    data_dir = stack.data_dir
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


async def _pg_usable(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


async def _start_cluster(stack: Stack) -> None:
    """Three nats-servers on loopback, one JetStream cluster, the streams replicated R3."""
    base = env.get_int("NATS_PORT", 4222)
    cluster = NatsCluster(
        root=stack.data_dir / "nats-cluster",
        authorization=PROJECT / "nats-auth.conf",
        client_ports=[base, base + 1, base + 2],
        route_ports=[base + 2000, base + 2001, base + 2002],
    )
    for port in (*cluster.client_ports, *cluster.route_ports):
        if port_in_use(port):
            raise UpError(f"port {port} is in use: set NATS_PORT to start the cluster elsewhere")
    await asyncio.to_thread(cluster.start)
    stack.nats = cluster
    stack.nats_url = cluster.url
    os.environ["STREAM_REPLICAS"] = "3"
    pids = ", ".join(
        f"{node.port} (pid {node.proc.pid if node.proc else '?'})" for node in cluster.nodes
    )
    stack.notes.append(f"NATS: 3-node JetStream cluster, streams R3, ports {pids}")


def stop_servers(stack: Stack) -> None:
    if stack.postgres is not None:
        stack.postgres.stop()
    if stack.nats is not None:
        stack.nats.stop()


@dataclass
class Services:
    """The service processes of one `voicebot up`: workers (and the console) first, the edge
    last."""

    workers: list[ServiceProcess] = field(default_factory=list)
    console: ServiceProcess | None = None
    edge: ServiceProcess | None = None
    restarts: int = 0

    @property
    def all(self) -> list[ServiceProcess]:
        return [*self.workers, *([self.console] if self.console else []), *self.edge_list]

    @property
    def edge_list(self) -> list[ServiceProcess]:
        return [self.edge] if self.edge else []


def _check_ports(edge_cfg: Any, console_cfg: Any, scale: dict[str, int]) -> None:
    ports = [
        ("AUDIOSOCKET_PORT", edge_cfg.port),
        ("HTTP_PORT", edge_cfg.http_port),
        ("METRICS_PORT", edge_cfg.metrics_port),
    ]
    if console_cfg.port:
        ports += [
            ("CONSOLE_PORT", console_cfg.port),
            ("CONSOLE_METRICS_PORT", console_cfg.metrics_port),
        ]
    for service, count in scale.items():
        variable, _ = METRICS_PORTS[service]
        ports += [(variable, metrics_port(service, i, dict(os.environ))) for i in range(count)]
    for name, port in ports:
        if port and port_in_use(port):
            raise UpError(
                f"port {port} ({name}) is already in use: is another voicebot running? "
                f"Stop it or set {name} in .env"
            )


def _validate_configs() -> tuple[Any, Any, Any, Any, Any]:
    """Every service's settings, checked here so a mistake is named before anything starts."""
    from archiver.config import ArchiverConfig
    from brain.config import BrainConfig
    from console.config import ConsoleConfig
    from edge.config import EdgeConfig
    from stt_worker.config import SttConfig
    from tts_worker.config import TtsConfig

    ArchiverConfig.from_env()
    return (
        EdgeConfig.from_env(),
        SttConfig.from_env(),
        BrainConfig.from_env(),
        TtsConfig.from_env(),
        ConsoleConfig.from_env(),
    )


async def _start(stack: Stack, svc: Services, scale: dict[str, int], console: bool) -> None:
    """Start the workers (and the console), then the edge, so the edge never admits a call
    nobody serves."""
    bus = await Bus.connect(stack.nats_url, "up", login=Login.from_env("admin"))
    try:
        await ensure_streams(bus.js)
    finally:
        await bus.close()
    svc.workers = [ServiceProcess(service, i) for service in WORKERS for i in range(scale[service])]
    if console:
        svc.console = ServiceProcess(CONSOLE)
    starting = [*svc.workers, *([svc.console] if svc.console else [])]
    for proc in starting:
        await proc.start()
    try:
        await asyncio.gather(*(proc.wait_ready() for proc in starting))
        svc.edge = ServiceProcess("edge")
        await svc.edge.start()
        await svc.edge.wait_ready(timeout_s=30.0)
    except RuntimeError as e:
        raise UpError(str(e)) from None


async def _stop(svc: Services) -> None:
    if svc.edge is not None:
        await svc.edge.stop()  # first: calls in progress get their goodbye
    rest = [*svc.workers, *([svc.console] if svc.console else [])]
    await asyncio.gather(*(proc.stop() for proc in rest))


async def _supervise(svc: Services) -> None:
    """Restart a service process that exited, as systemd's Restart=always would: a worker's
    calls were taken over by its peers meanwhile; a dead edge's calls are gone, the next ones
    are served by the new one."""
    while True:
        waiters = {asyncio.ensure_future(p.exited()): p for p in svc.all}
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waiters:
                fut.cancel()
        for fut in done:
            proc = waiters[fut]
            print(
                f"{proc.label} (pid {proc.pid}) exited with code {fut.result()}: restarting it",
                flush=True,
            )
            svc.restarts += 1
            await asyncio.sleep(1.0)
            await proc.start()
            if proc is svc.edge:
                try:
                    await proc.wait_ready(timeout_s=30.0)
                except RuntimeError as e:
                    raise UpError(f"the edge could not be restarted: {e}") from None
            print(f"{proc.label} restarted: pid {proc.pid}", flush=True)


async def run_services(
    stack: Stack,
    *,
    scale: dict[str, int] | None = None,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Start the service processes, print the banner, run until a signal (or `stop`, or the
    edge dies)."""
    scale = scale or parse_scale(None)
    configs = _validate_configs()
    _check_ports(configs[0], configs[4], scale)
    svc = Services()
    try:
        await _start(stack, svc, scale, console=bool(configs[4].port))
        print(banner(stack, svc, configs), flush=True)
        if ready is not None:
            ready.set()
        waiters = {
            asyncio.ensure_future(stop.wait() if stop is not None else wait_for_signal()),
            asyncio.ensure_future(_supervise(svc)),
        }
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()  # an UpError from the supervisor ends `voicebot up`
        print("Stopping: calls in progress get their goodbye, then the servers stop...", flush=True)
    finally:
        await _stop(svc)


def banner(stack: Stack, svc: Services, configs: tuple[Any, Any, Any, Any, Any]) -> str:
    edge, stt, brain, tts, console = configs
    from tts_worker import phrase_cache

    line = "=" * 60
    phrases = len(phrase_cache.load(tts.cache_dir))
    tts_pool = tts.pool_workers or os.cpu_count() or 1
    stt_pool = stt.stt_workers if stt.provider == "whisper" else 0
    processes = [
        f"  {p.label:<14} pid {p.pid:<7} metrics :{p.port}"
        if p.port
        else f"  {p.label:<14} pid {p.pid}"
        for p in svc.all
    ]
    rows = [
        line,
        f"AudioSocket Server started on {edge.host}:{edge.port}",
        f"Cache loaded: {phrases} phrases",
        f"Process pool workers: {tts_pool} (TTS) + {stt_pool} (STT) per instance",
        f"Max concurrent calls: {edge.max_concurrent_calls}",
        f"HTTP API: http://{edge.http_host}:{edge.http_port}",
        f"Caller registration allowed to: {edge.write_access}",
        f"Providers: STT {stt.provider} · NLU {brain.nlu_provider} · TTS {tts.provider}",
        f"Call console: {console.describe()}" if console.port else "Call console: off",
        "Processes (kill -9 any: another instance takes its calls over, and it restarts):",
        *processes,
        *stack.notes,
        "Place a test call:  .venv/bin/voicebot call",
        "Trace calls live:   .venv/bin/voicebot trace",
        line,
    ]
    return "\n".join(rows)


async def up(
    data_dir: Path, scale: dict[str, int] | None = None, *, nats_cluster: bool = False
) -> int:
    """Run everything until Ctrl-C; `data_dir` must exist (the CLI creates it)."""
    try:
        lock = _lock(data_dir)
    except UpError as e:
        print(f"voicebot up: {e}")
        return 1
    stack: Stack | None = None
    try:
        stack = await start_servers(data_dir, nats_cluster=nats_cluster)
        await run_services(stack, scale=scale)
        return 0
    except (UpError, ServerError, env.ConfigError) as e:
        print(f"voicebot up: {e}")
        return 1
    finally:
        if stack is not None:
            await asyncio.to_thread(stop_servers, stack)
        lock.unlink(missing_ok=True)
