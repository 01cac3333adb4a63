"""Run the whole system in-process, as `voicebot up` does, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from loopback.deepgram_live import DeepgramLoopback, Faults

from voicebot.servers import free_port
from voicebot.up import Stack, run_services


@dataclass(frozen=True)
class Ports:
    audiosocket: int
    http: int


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the services' `from_env()`, restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.asynccontextmanager
async def running_pipeline(
    nats_url: str, database_url: str, data_dir: Path, **overrides: str
) -> AsyncIterator[Ports]:
    ports = Ports(audiosocket=free_port(), http=free_port())
    values = {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "AUDIOSOCKET_HOST": "127.0.0.1",
        "AUDIOSOCKET_PORT": str(ports.audiosocket),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(ports.http),
        "METRICS_PORT": "0",
        "STT_METRICS_PORT": "0",
        "BRAIN_METRICS_PORT": "0",
        "TTS_METRICS_PORT": "0",
        "ARCHIVER_METRICS_PORT": "0",
        "CONSOLE_PORT": "0",  # the call console: off unless a test looks at it
        "EDGE_RT_PRIORITY": "0",
        "NLU_PROVIDER": "rules",
        "TTS_PROVIDER": "espeak",
        "TTS_POOL_WORKERS": "1",
        "CACHE_DIR": str(data_dir / "cache"),
        **overrides,
    }
    stack = Stack(data_dir=data_dir, nats_url=nats_url, database_url=database_url)
    ready, stop = asyncio.Event(), asyncio.Event()
    with environment(values):
        task = asyncio.create_task(run_services(stack, ready=ready, stop=stop))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiter.cancel()
            task.result()  # raises what went wrong
        assert ready.is_set(), "the pipeline did not start in 60 s"
        try:
            yield ports
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)


@contextlib.asynccontextmanager
async def scripted_pipeline(
    nats_url: str,
    database_url: str,
    data_dir: Path,
    utterances: list[str],
    *,
    faults: Faults | None = None,
    **overrides: str,
) -> AsyncIterator[tuple[Ports, DeepgramLoopback]]:
    """The pipeline with STT through the real Deepgram SDK to the loopback in utterance mode:
    each voiced stretch of a caller's audio is heard as the next of `utterances`."""
    async with (
        DeepgramLoopback(api_key="k", utterances=utterances, faults=faults) as dg,
        running_pipeline(
            nats_url,
            database_url,
            data_dir,
            STT_PROVIDER="deepgram",
            DEEPGRAM_API_KEY="k",
            DEEPGRAM_URL=dg.url,
            **overrides,
        ) as ports,
    ):
        yield ports, dg
