"""The commands' connections (`voicebot archive`, `voicebot purge`), with errors a person can
act on: which server could not be reached, never a traceback, never a password."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import nats
import nats.errors

from events.auth import Login
from events.bus import Bus

TIMEOUT_S = 30.0

log = logging.getLogger("archiver.connect")


class Unreachable(RuntimeError):
    pass


async def _quiet(e: Exception) -> None:
    log.debug("NATS: %s", e)


def redact(url: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user@host/db`."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1@", url)


@asynccontextmanager
async def connections(
    database_url: str, nats_url: str, service: str, login: Login
) -> AsyncIterator[tuple[asyncpg.Connection, Bus]]:
    try:
        conn = await asyncpg.connect(database_url, timeout=10, command_timeout=TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        raise Unreachable(f"cannot reach PostgreSQL at {redact(database_url)}: {e}") from e
    try:
        try:
            # A command gives up after a few attempts (Bus.connect, for services, never does).
            nc = await nats.connect(
                nats_url,
                name=f"voicebot-{service}",
                connect_timeout=5,
                max_reconnect_attempts=3,
                reconnect_time_wait=0.5,
                error_cb=_quiet,  # the one error worth saying is raised below
                **login.connect_options(nats_url),
            )
        except (OSError, TimeoutError, nats.errors.Error) as e:
            raise Unreachable(f"cannot reach NATS at {redact(nats_url)}: {e}") from e
        bus = Bus(nc, service)
        try:
            yield conn, bus
        finally:
            await bus.close()
    finally:
        await conn.close(timeout=5)
