"""`python -m tts_worker`: the TTS worker alone (several may run against one NATS)."""

from __future__ import annotations

import logging
import sys

from events import runtime
from events.bus import Bus
from events.streams import ensure_streams
from tts_worker.config import TtsConfig
from tts_worker.worker import TtsWorker

log = logging.getLogger("tts_worker")


async def run(cfg: TtsConfig) -> None:
    health = runtime.Health("tts_worker")
    health.start()
    bus = await Bus.connect(cfg.nats_url, "tts_worker", login=cfg.nats_login)
    health.check("nats", lambda: bus.nc.is_connected)
    runtime.serve_metrics(cfg.metrics_port, health)
    await ensure_streams(bus.js, manage=False)
    worker = TtsWorker(cfg, bus)
    try:
        await worker.start()
        log.info("tts_worker up: provider %s", cfg.provider)
        health.ready()
        log.info("tts_worker stopping on %s", await runtime.wait_for_signal())
    finally:
        await worker.stop()
        await bus.close()


if __name__ == "__main__":
    sys.exit(runtime.main("tts_worker", TtsConfig.from_env, run))
