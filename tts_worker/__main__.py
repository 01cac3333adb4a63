"""`python -m tts_worker`: the TTS worker alone, against the NATS of NATS_URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from events.bus import Bus
from events.env import ConfigError, get_str, load_dotenv
from events.runtime import setup_logging, wait_for_signal
from events.streams import ensure_streams
from tts_worker.config import TtsConfig
from tts_worker.worker import TtsWorker

log = logging.getLogger("tts_worker")


async def run(config: TtsConfig) -> None:
    bus = await Bus.connect(config.nats_url, "tts_worker")
    worker = TtsWorker(config, bus)
    try:
        await ensure_streams(bus.js)
        await worker.start()
        log.info("tts_worker stopping on %s", await wait_for_signal())
    finally:
        await worker.stop()
        await bus.close()


def main() -> None:
    load_dotenv()
    setup_logging(get_str("LOG_LEVEL", "INFO"))
    try:
        config = TtsConfig.from_env()
    except ConfigError as e:
        raise SystemExit(f"tts_worker: configuration error: {e}") from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(config))


if __name__ == "__main__":
    main()
