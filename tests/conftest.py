"""Fixtures that start real servers: a nats-server with JetStream, and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from events.bus import Bus
from events.streams import ensure_streams
from voicebot.servers import NatsServer, free_port

os.environ.setdefault("VOICEBOT_TEST", "1")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server (JetStream, file store) per test; tests may stop/restart it."""
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    b = await Bus.connect(nats_server.url, "test")
    await ensure_streams(b.js)
    try:
        yield b
    finally:
        await b.close()
