"""The console served in-process against the test's NATS and PostgreSQL, for its tests."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp
import asyncpg

from console.auth import Access, parse_users
from console.calls import Calls
from console.live import LiveFeed
from console.server import Console, serve
from events.auth import Login
from events.bus import Bus
from voicebot.servers import free_port

SUPERVISOR = ("ana", "ana-pw-1")
AGENT = ("bob", "bob-pw-2")
TOKEN = "console-token-3"
USERS = f"{SUPERVISOR[0]}:{SUPERVISOR[1]}:supervisor,{AGENT[0]}:{AGENT[1]}"


@dataclass(frozen=True)
class Served:
    url: str
    feed: LiveFeed


def basic(who: tuple[str, str], **more: str) -> dict[str, str]:
    """Request headers with HTTP Basic credentials (and `more`)."""
    token = base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}", **more}


@contextlib.asynccontextmanager
async def serving(
    nats_url: str, database_url: str, access: Access | None = None
) -> AsyncIterator[Served]:
    access = access or Access(token=TOKEN, users=parse_users(USERS))
    bus = await Bus.connect(nats_url, "console")
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=2, timeout=10)
    executor = ThreadPoolExecutor(1)  # the pool's jobs are plain functions: a thread will do
    feed = LiveFeed(bus, interval_s=0.1)
    calls = Calls(bus, pool, executor, nats_url=nats_url, login=Login(), database_url=database_url)
    port = free_port()
    await feed.start()
    runner = await serve(Console(access, feed, calls, pool).app(), "127.0.0.1", port)
    try:
        yield Served(f"http://127.0.0.1:{port}", feed)
    finally:
        await runner.cleanup()
        await feed.stop()
        executor.shutdown(wait=False)
        await pool.close()
        await bus.close()


async def read_events(response: aiohttp.ClientResponse, until: str, limit: int = 200) -> str:
    """Server-sent events of `response` until one contains `until` (the caller's timeout
    bounds the wait)."""
    seen = []
    async for raw in response.content:
        line = raw.decode()
        seen.append(line)
        if until in line or len(seen) > limit:
            break
    return "".join(seen)
