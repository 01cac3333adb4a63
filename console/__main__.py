"""`python -m console`: the call console alone (`voicebot up` runs it too).

Live calls from NATS (user `console`, read-only), past calls from PostgreSQL (read-only
queries) and the archive's MP3s; audio rendered in a small process pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import asyncpg

from console.calls import Calls
from console.config import ConsoleConfig
from console.live import LiveFeed
from console.server import Console, serve
from events import runtime
from events.bus import Bus

log = logging.getLogger("console")


async def run(cfg: ConsoleConfig) -> None:
    health = runtime.Health("console")
    health.start()
    bus = await Bus.connect(cfg.nats_url, "console", login=cfg.nats_login)
    health.check("nats", lambda: bus.nc.is_connected)
    runtime.serve_metrics(cfg.metrics_port, health)
    # Connections are opened when a page needs one: the live view works with PostgreSQL down.
    pool = (
        await asyncpg.create_pool(
            cfg.database_url, min_size=0, max_size=4, timeout=10, command_timeout=30
        )
        if cfg.database_url
        else None
    )
    executor = ProcessPoolExecutor(
        cfg.workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=runtime.exit_with_parent,
        initargs=(os.getpid(),),
    )
    feed = LiveFeed(bus, interval_s=cfg.live_interval_s, max_clients=cfg.max_clients)
    calls = Calls(
        bus,
        pool,
        executor,
        nats_url=cfg.nats_url,
        login=cfg.nats_login,
        database_url=cfg.database_url,
    )
    runner = None
    try:
        await feed.start()
        runner = await serve(Console(cfg.access, feed, calls, pool).app(), cfg.host, cfg.port)
        if cfg.host_forced:
            log.warning(
                "CONSOLE_HOST ignored: with no CONSOLE_TOKEN or CONSOLE_USERS, localhost only"
            )
        log.info("console up: %s", cfg.describe())
        health.ready()
        log.info("console stopping on %s", await runtime.wait_for_signal())
    finally:
        await feed.stop()
        if runner is not None:
            await runner.cleanup()
        executor.shutdown(wait=False, cancel_futures=True)
        if pool is not None:
            await pool.close()
        await bus.close()


if __name__ == "__main__":
    sys.exit(
        runtime.main(
            "console", ConsoleConfig.from_env, run, before_loop=lambda c: runtime.yield_cpu(c.nice)
        )
    )
