"""The system under test, started by the harness: `voicebot up` as a child process on the
offline providers, with its own ports and data folder, stopped (Ctrl-C) at the end."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from events import env as env_lib
from voicebot.servers import free_port

READY_TIMEOUT_S = 240.0  # first start: the phrase cache and the Whisper model are prepared
STOP_TIMEOUT_S = 60.0
OFFLINE = {"STT_PROVIDER": "whisper", "NLU_PROVIDER": "rules", "TTS_PROVIDER": "espeak"}


class SystemError_(RuntimeError):
    """The system under test did not start."""


@dataclass(frozen=True, kw_only=True)
class Ports:
    audiosocket: int
    http: int
    metrics: int
    nats: int
    pg: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        """Five consecutive ports from `base`, in the order of the `voicebot up` variables."""
        return cls(
            audiosocket=base,
            http=base + 1,
            metrics=base + 2,
            nats=base + 3,
            pg=base + 4,
        )

    @classmethod
    def free(cls) -> Ports:
        return cls(
            audiosocket=free_port(),
            http=free_port(),
            metrics=free_port(),
            nats=free_port(),
            pg=free_port(),
        )


@dataclass(frozen=True)
class Running:
    ports: Ports
    nats_url: str
    log: Path


@contextlib.asynccontextmanager
async def voicebot_up(
    ports: Ports, data_dir: Path, base_env: dict[str, str]
) -> AsyncIterator[Running]:
    """`voicebot up` with embedded NATS and PostgreSQL under `data_dir`, offline providers."""
    log = data_dir / "voicebot-up.log"
    env = {
        **base_env,
        **OFFLINE,
        "AUDIOSOCKET_HOST": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "AUDIOSOCKET_PORT": str(ports.audiosocket),
        "HTTP_PORT": str(ports.http),
        "METRICS_PORT": str(ports.metrics),
        # The workers' metrics are not needed here: off, so nothing collides with `make run`.
        "STT_METRICS_PORT": "0",
        "BRAIN_METRICS_PORT": "0",
        "TTS_METRICS_PORT": "0",
        "ARCHIVER_METRICS_PORT": "0",
        "CONSOLE_PORT": "0",  # the call console: not needed here
        "NATS_PORT": str(ports.nats),
        "PG_PORT": str(ports.pg),
        "VOICEBOT_DATA_DIR": str(data_dir),
        # Empty, not unset: `.env` must not point the system at another server.
        "NATS_URL": "",
        "DATABASE_URL": "",
    }
    sink = await asyncio.to_thread(_open_log, log)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voicebot.cli",
            "up",
            env=env,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await _wait_ready(proc, ports.http, log)
            # The NATS passwords it generated: the harness watches the calls as user `tracer`.
            env_lib.load_dotenv(data_dir / "secrets.env")
            yield Running(ports, f"nats://127.0.0.1:{ports.nats}", log)
        finally:
            await _stop(proc)
    finally:
        sink.close()


def _open_log(log: Path) -> IO[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    return log.open("wb")


async def _wait_ready(proc: asyncio.subprocess.Process, http_port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise SystemError_(f"voicebot up exited with code {proc.returncode}; see {log}")
        with contextlib.suppress(OSError, TimeoutError):
            if await _http_status("127.0.0.1", http_port, "/ready") == 200:
                return
        await asyncio.sleep(0.5)
    raise SystemError_(f"voicebot up not ready after {READY_TIMEOUT_S:.0f} s; see {log}")


async def _http_status(host: str, port: int, path: str) -> int:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    async with asyncio.timeout(2):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request.encode())
            parts = (await reader.readline()).decode().split()
        finally:
            writer.close()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Ctrl-C, as a person stops it: calls get their goodbye, then the servers stop."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
