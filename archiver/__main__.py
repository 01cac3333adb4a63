"""`python -m archiver`: the CALLS -> PostgreSQL projection alone (several may share it).

The nightly MP3s, retention and erasure are commands, not this service: `voicebot archive`
and `voicebot purge` (see README).
"""

from __future__ import annotations

import logging
import sys

import uvloop
from prometheus_client import start_http_server

from archiver.config import ArchiverConfig
from archiver.projector import Projector
from events import env
from events.bus import Bus
from events.env import ConfigError
from events.runtime import mark_ready, setup_logging, wait_for_signal

log = logging.getLogger("archiver")


async def run(cfg: ArchiverConfig) -> None:
    bus = await Bus.connect(cfg.nats_url, "archiver")
    projector = Projector(cfg, bus)
    await projector.start()
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port)
    log.info("archiver up: projecting CALLS into PostgreSQL, %d messages a batch", cfg.batch)
    mark_ready()
    log.info("archiver stopping on %s", await wait_for_signal())
    await projector.stop()
    await bus.close()


def main() -> int:
    env.load_dotenv()
    setup_logging(env.get_str("LOG_LEVEL", "INFO"))
    try:
        cfg = ArchiverConfig.from_env()
    except ConfigError as e:
        log.error("configuration error: %s", e)
        return 2
    uvloop.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
