"""`python -m tts_worker`: the TTS worker alone, against the NATS of NATS_URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from events.bus import Bus
from events.env import ConfigError, load_dotenv
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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
    finally:
        await worker.stop()
        await bus.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    load_dotenv()
    try:
        config = TtsConfig.from_env()
    except ConfigError as e:
        raise SystemExit(f"tts_worker: configuration error: {e}") from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(config))


if __name__ == "__main__":
    main()
