"""Fault tests: real servers, real processes, really broken.

One system runs at a time (two would share 2 cores and blur every figure): `systems.get(name)`
returns the running one when it matches, else stops it and starts the one asked for. The
worker faults share one system (single NATS node, its own PostgreSQL); NATS faults and the
edge crash each get their own, since they break what the others stand on.

Every fault test adds a row to the table `--fault-table` prints at the end of the session:
fault | caller's longest wait | normal end? | events lost / duplicated | time to recover
(`.venv/bin/python -m pytest tests/faults --fault-table`; the option is declared in
tests/conftest.py, as pytest only reads options from the first conftests it loads).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_run import ROWS, Running, Systems, connect, make_phrase_cache, table

from brain.store import apply_schema
from events.bus import Bus
from voicebot.servers import PostgresServer, free_port


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if ROWS and config.getoption("--fault-table"):
        terminalreporter.section("faults: what the caller lived through")
        terminalreporter.write_line(table(ROWS))


@pytest.fixture(scope="session")
def fault_postgres() -> Iterator[PostgresServer]:
    """The fault tests' own PostgreSQL (the outage test stops it)."""
    root = Path(tempfile.mkdtemp(prefix="voicebot-faults-pg-"))
    os.chmod(root, 0o755)  # the unprivileged `postgres` user runs it when we are root
    server = PostgresServer(data_dir=root / "data", port=free_port(), fast=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def systems(
    fault_postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Systems]:
    asyncio.run(apply_schema(fault_postgres.url))
    root = tmp_path_factory.mktemp("faults")
    make_phrase_cache(root / "cache")
    bank = Systems(root, fault_postgres, root / "cache")
    try:
        yield bank
    finally:
        bank.close()


@pytest.fixture
def shared(systems: Systems) -> Running:
    """The worker-fault system: single NATS node, the fault tests' PostgreSQL, 2 of each worker."""
    return systems.get("shared")


@pytest.fixture
async def shared_bus(shared: Running) -> AsyncIterator[Bus]:
    async with connect(shared) as bus:
        yield bus


@pytest.fixture
def nats_alone(systems: Systems) -> Running:
    """A system of its own on a single NATS node the test kills and restarts."""
    return systems.get("nats")


@pytest.fixture
async def nats_alone_bus(nats_alone: Running) -> AsyncIterator[Bus]:
    async with connect(nats_alone) as bus:
        yield bus


@pytest.fixture
def cluster(systems: Systems) -> Running:
    """A system on a 3-node NATS cluster, streams replicated R3."""
    return systems.get("cluster")


@pytest.fixture
async def cluster_bus(cluster: Running) -> AsyncIterator[Bus]:
    async with connect(cluster) as bus:
        yield bus


@pytest.fixture
def edge_alone(systems: Systems) -> Running:
    """A system of its own: its edge gets killed."""
    return systems.get("edge")


@pytest.fixture
async def edge_alone_bus(edge_alone: Running) -> AsyncIterator[Bus]:
    async with connect(edge_alone) as bus:
        yield bus
