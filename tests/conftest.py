"""Fixtures that start real servers: a nats-server with JetStream, and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from brain.store import apply_schema
from events.bus import Bus
from events.streams import ensure_streams
from voicebot.servers import NatsServer, PostgresServer, free_port

os.environ.setdefault("VOICEBOT_TEST", "1")


_STARTED: list[NatsServer] = []  # stopped at the end of the session if a teardown was cut short


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server (JetStream, file store) per test; tests may stop/restart it."""
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port())
    _STARTED.append(server)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        _STARTED.remove(server)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-table",
        action="store_true",
        help="after tests/faults: one row per fault (the caller's longest wait, normal end, "
        "events lost/duplicated, time to recover)",
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test that timed out in its teardown leaves its server running: stop it here."""
    for server in _STARTED:
        server.kill()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    b = await Bus.connect(nats_server.url, "test")
    await ensure_streams(b.js)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the session: DATABASE_URL if set, else one we start (fsync off)."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    # Under /tmp with 0755 so the unprivileged `postgres` user can enter it when we are root.
    root = Path(tempfile.mkdtemp(prefix="voicebot-test-pg-"))
    os.chmod(root, 0o755)
    server = PostgresServer(data_dir=root / "data", port=free_port(), fast=True)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh database with init_db.sql applied, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    await apply_schema(url)
    try:
        yield url
    finally:
        admin = await asyncpg.connect(postgres_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
