"""`python -m stt_worker`: one STT instance alone (several may run against one NATS)."""

from __future__ import annotations

import logging
import sys

from events import runtime
from events.bus import Bus
from events.streams import ensure_streams
from stt_worker.config import SttConfig
from stt_worker.model_store import ModelMissing
from stt_worker.worker import SttWorker

log = logging.getLogger("stt_worker")


async def run(cfg: SttConfig) -> None:
    health = runtime.Health("stt_worker")
    health.start()
    bus = await Bus.connect(cfg.nats_url, "stt_worker", login=cfg.nats_login)
    health.check("nats", lambda: bus.nc.is_connected)
    runtime.serve_metrics(cfg.metrics_port, health)
    await ensure_streams(bus.js, manage=False)
    worker = SttWorker(cfg, bus)
    try:
        await worker.start()
        log.info(
            "stt_worker up: provider %s, %d inference process(es)",
            worker.provider_name,
            worker.pool_workers,
        )
        health.ready()
        log.info("stt_worker stopping on %s", await runtime.wait_for_signal())
    finally:
        await worker.stop()
        await bus.close()


if __name__ == "__main__":
    sys.exit(runtime.main("stt_worker", SttConfig.from_env, run, config_errors=(ModelMissing,)))
