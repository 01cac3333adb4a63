"""`python -m stt_worker`: one STT instance alone (several may run against one NATS)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop
from prometheus_client import start_http_server

from events import env
from events.bus import Bus
from events.env import ConfigError
from events.streams import ensure_streams
from stt_worker.config import SttConfig
from stt_worker.model_store import ModelMissing
from stt_worker.worker import SttWorker

log = logging.getLogger("stt_worker")


async def run(cfg: SttConfig) -> None:
    bus = await Bus.connect(cfg.nats_url, "stt_worker")
    await ensure_streams(bus.js)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port)
    worker = SttWorker(cfg, bus)
    await worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "stt_worker up: provider %s, %d inference process(es)",
        worker.provider_name,
        worker.pool_workers,
    )
    await stop.wait()
    log.info("stt_worker stopping")
    await worker.stop()
    await bus.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env.load_dotenv()
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
