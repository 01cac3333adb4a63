"""`python -m archiver`: the CALLS -> PostgreSQL projection alone (several may share it).

The nightly MP3s, retention and erasure are commands, not this service: `voicebot archive`
and `voicebot purge` (see README).
"""

from __future__ import annotations

import logging
import sys

from archiver.config import ArchiverConfig
from archiver.projector import Projector
from events import runtime
from events.bus import Bus

log = logging.getLogger("archiver")


async def run(cfg: ArchiverConfig) -> None:
    health = runtime.Health("archiver")
    health.start()
    bus = await Bus.connect(cfg.nats_url, "archiver", login=cfg.nats_login)
    health.check("nats", lambda: bus.nc.is_connected)
    runtime.serve_metrics(cfg.metrics_port, health)
    projector = Projector(cfg, bus)
    try:
        await projector.start()
        log.info("archiver up: projecting CALLS into PostgreSQL, %d messages a batch", cfg.batch)
        health.ready()
        log.info("archiver stopping on %s", await runtime.wait_for_signal())
    finally:
        await projector.stop()
        await bus.close()


if __name__ == "__main__":
    sys.exit(
        runtime.main(
            "archiver",
            ArchiverConfig.from_env,
            run,
            before_loop=lambda c: runtime.yield_cpu(c.nice),
        )
    )
