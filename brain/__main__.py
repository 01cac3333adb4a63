"""`python -m brain`: run the dialog brain alone against NATS (and PostgreSQL if configured)."""

from __future__ import annotations

import asyncio

from brain.config import BrainConfig
from brain.store import Store
from brain.worker import BrainWorker
from events import env
from events.bus import Bus
from events.runtime import install_uvloop, run_service, setup_logging
from events.streams import ensure_streams


async def main() -> None:
    env.load_dotenv()
    config = BrainConfig.from_env()
    bus = await Bus.connect(config.nats_url, "brain")
    await ensure_streams(bus.js)
    store = await Store.connect(config.database_url) if config.database_url else None
    worker = BrainWorker(config, bus, store)
    await worker.start()
    try:
        await run_service("brain")
    finally:
        await worker.stop()
        if store is not None:
            await store.close()
        await bus.close()


if __name__ == "__main__":
    setup_logging(env.get_str("LOG_LEVEL", "INFO"))
    install_uvloop()
    asyncio.run(main())
