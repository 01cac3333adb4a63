"""`python -m edge`: the AudioSocket edge alone (production shape: one edge per host)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop
from prometheus_client import start_http_server

from edge.config import EdgeConfig
from edge.http_api import HttpApi
from edge.server import EdgeServer
from events import env
from events.bus import Bus
from events.env import ConfigError
from events.streams import ensure_streams

log = logging.getLogger("edge")

SHUTDOWN_GRACE_S = 10.0


async def run(cfg: EdgeConfig) -> None:
    bus = await Bus.connect(cfg.nats_url, "edge")
    await ensure_streams(bus.js)
    start_http_server(cfg.metrics_port)
    server = EdgeServer(cfg, bus)
    api = HttpApi(cfg, server)
    await server.start()
    await api.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "edge %s up: AudioSocket %d, HTTP %d, metrics %d",
        cfg.edge_id,
        cfg.port,
        cfg.http_port,
        cfg.metrics_port,
    )
    await stop.wait()
    log.info("edge stopping")
    await server.stop(SHUTDOWN_GRACE_S)
    await api.stop()
    await bus.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env.load_dotenv()
    try:
        cfg = EdgeConfig.from_env()
    except ConfigError as e:
        log.error("configuration error: %s", e)
        return 2
    uvloop.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
