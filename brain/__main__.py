"""`python -m brain`: the dialog brain alone (several may run against one NATS)."""

from __future__ import annotations

import logging
import sys

import uvloop
from prometheus_client import start_http_server

from brain.config import BrainConfig
from brain.store import Store
from brain.worker import BrainWorker
from events import env
from events.bus import Bus
from events.env import ConfigError
from events.runtime import mark_ready, setup_logging, wait_for_signal
from events.streams import ensure_streams

log = logging.getLogger("brain")


async def run(cfg: BrainConfig) -> None:
    bus = await Bus.connect(cfg.nats_url, "brain")
    await ensure_streams(bus.js)
    store = await Store.connect(cfg.database_url) if cfg.database_url else None
    worker = BrainWorker(cfg, bus, store)
    await worker.start()
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port)
    log.info("brain up: NLU %s, database %s", cfg.nlu_provider, "yes" if store else "none")
    mark_ready()
    log.info("brain stopping on %s", await wait_for_signal())
    await worker.stop()
    if store is not None:
        await store.close()
    await bus.close()


def main() -> int:
    env.load_dotenv()
    setup_logging(env.get_str("LOG_LEVEL", "INFO"))
    try:
        cfg = BrainConfig.from_env()
    except ConfigError as e:
        log.error("configuration error: %s", e)
        return 2
    uvloop.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
