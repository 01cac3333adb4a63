"""The embedded servers `voicebot up` starts: PostgreSQL from either source of binaries."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest

from brain.store import apply_schema
from voicebot.servers import PostgresServer, free_port, pgserver_bindir, system_postgres_bindir

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

SOURCES = {"pgserver wheel": pgserver_bindir, "system packages": system_postgres_bindir}


@pytest.mark.parametrize("source", sorted(SOURCES))
async def test_postgres_starts_applies_the_schema_twice_and_restarts(source: str) -> None:
    bindir = SOURCES[source]()
    if bindir is None:
        pytest.skip(f"no PostgreSQL from {source} on this machine")
    root = Path(tempfile.mkdtemp(prefix="voicebot-pg-"))
    os.chmod(root, 0o755)  # the unprivileged user PostgreSQL runs as (when root) must enter it
    server = PostgresServer(data_dir=root / "pg", port=free_port(), bindir=bindir, fast=True)
    try:
        server.start()
        await apply_schema(server.url)
        await apply_schema(server.url)  # idempotent: `voicebot up` applies it at every start
        server.stop()
        server.start()  # reuses the data folder
        conn = await asyncpg.connect(server.url)
        try:
            count = await conn.fetchval("SELECT count(*) FROM phone_numbers")
        finally:
            await conn.close()
        assert count == 4  # the seed rows, once
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_start_that_fails_half_way_leaves_no_server_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's port is taken by something else after our NATS started: `voicebot up`
    says so, and the NATS it started (with its generated users) is stopped."""
    import socket

    from events.auth import PASSWORD_VARIABLES
    from voicebot.servers import port_in_use
    from voicebot.up import UpError, start_servers

    nats_port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        for name in ("NATS_URL", "DATABASE_URL"):
            monkeypatch.delenv(name, raising=False)
        for name in PASSWORD_VARIABLES:  # generated into os.environ: restored after the test
            monkeypatch.setenv(name, "")
        monkeypatch.setenv("NATS_PORT", str(nats_port))
        monkeypatch.setenv("PG_PORT", str(squatter.getsockname()[1]))
        with pytest.raises(UpError, match="PG_PORT"):
            await start_servers(tmp_path)
        assert not port_in_use(nats_port)
    secrets = tmp_path / "secrets.env"
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"
    assert "NATS_EDGE_PASSWORD=" in secrets.read_text()
