"""`python -m stt_worker`: one STT instance alone (several may run against one NATS)."""

from __future__ import annotations

import logging
import sys

import uvloop
from prometheus_client import start_http_server

from events import env
from events.bus import Bus
from events.env import ConfigError
from events.runtime import mark_ready, setup_logging, wait_for_signal
from events.streams import ensure_streams
from stt_worker.config import SttConfig
from stt_worker.model_store import ModelMissing
from stt_worker.worker import SttWorker

log = logging.getLogger("stt_worker")


async def run(cfg: SttConfig) -> None:
    bus = await Bus.connect(cfg.nats_url, "stt_worker")
    await ensure_streams(bus.js)
    worker = SttWorker(cfg, bus)
    await worker.start()
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port)
    log.info(
        "stt_worker up: provider %s, %d inference process(es)",
        worker.provider_name,
        worker.pool_workers,
    )
    mark_ready()
    log.info("stt_worker stopping on %s", await wait_for_signal())
    await worker.stop()
    await bus.close()


def main() -> int:
    env.load_dotenv()
    setup_logging(env.get_str("LOG_LEVEL", "INFO"))
    try:
        cfg = SttConfig.from_env()
    except ConfigError as e:
        log.error("configuration error: %s", e)
        return 2
    try:
        uvloop.run(run(cfg))
    except ModelMissing as e:
        log.error("offline model unavailable: %s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
