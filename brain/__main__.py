"""`python -m brain`: the dialog brain alone (several may run against one NATS)."""

from __future__ import annotations

import logging
import sys

from brain.config import BrainConfig
from brain.store import Store
from brain.worker import BrainWorker
from events import runtime
from events.bus import Bus
from events.streams import ensure_streams

log = logging.getLogger("brain")


async def run(cfg: BrainConfig) -> None:
    health = runtime.Health("brain")
    health.start()
    bus = await Bus.connect(cfg.nats_url, "brain", login=cfg.nats_login)
    health.check("nats", lambda: bus.nc.is_connected)
    runtime.serve_metrics(cfg.metrics_port, health)
    await ensure_streams(bus.js, manage=False)
    store = await Store.connect(cfg.database_url) if cfg.database_url else None
    worker = BrainWorker(cfg, bus, store)
    try:
        await worker.start()
        log.info("brain up: NLU %s, database %s", cfg.nlu_provider, "yes" if store else "none")
        health.ready()
        log.info("brain stopping on %s", await runtime.wait_for_signal())
    finally:
        await worker.stop()
        if store is not None:
            await store.close()
        await bus.close()


if __name__ == "__main__":
    sys.exit(runtime.main("brain", BrainConfig.from_env, run))
