"""`python -m tts_worker`: the TTS worker alone (several may run against one NATS)."""

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
from tts_worker.config import TtsConfig
from tts_worker.worker import TtsWorker

log = logging.getLogger("tts_worker")


async def run(cfg: TtsConfig) -> None:
    bus = await Bus.connect(cfg.nats_url, "tts_worker")
    await ensure_streams(bus.js)
    worker = TtsWorker(cfg, bus)
    try:
        await worker.start()
        if cfg.metrics_port:
            start_http_server(cfg.metrics_port)
        mark_ready()
        log.info("tts_worker stopping on %s", await wait_for_signal())
    finally:
        await worker.stop()
        await bus.close()


def main() -> int:
    env.load_dotenv()
    setup_logging(env.get_str("LOG_LEVEL", "INFO"))
    try:
        cfg = TtsConfig.from_env()
    except ConfigError as e:
        log.error("configuration error: %s", e)
        return 2
    uvloop.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
