"""The archiver's projection against real NATS and PostgreSQL: every CALLS message becomes
rows once, whatever is redelivered; a PostgreSQL outage pauses it and loses nothing; a ticket
requested during an outage is created when the database returns."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from archive_support import FakeCall, until, wait_rows

from archiver.config import ArchiverConfig
from archiver.projector import Projector
from brain.store import apply_schema
from events import schemas, subjects
from events.bus import Bus
from events.streams import AUDIO, CALLS, DAY_S, DurableConsumer, ensure_streams
from voicebot.servers import NatsServer, PostgresServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TABLES = ("call_events", "transcripts", "decisions", "turns", "tickets")


def config(nats_url: str, database_url: str, **changes: object) -> ArchiverConfig:
    base = ArchiverConfig.from_env({"DATABASE_URL": database_url, "NATS_URL": nats_url})
    return replace(base, **changes)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def projecting(
    nats_url: str, database_url: str, consumer: DurableConsumer | None = None, **changes: object
) -> AsyncIterator[Projector]:
    bus = await Bus.connect(nats_url, "archiver")
    cfg = config(nats_url, database_url, **changes)
    projector = Projector(cfg, bus, consumer) if consumer else Projector(cfg, bus)
    await projector.start()
    try:
        yield projector
    finally:
        await projector.stop()
        await bus.close()


async def stream_last_seq(bus: Bus) -> int:
    return int((await bus.js.stream_info(CALLS)).state.last_seq)


async def counts(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        out = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
        out["calls"] = await conn.fetchval("SELECT count(*) FROM calls")
        return out
    finally:
        await conn.close()


async def calls_rows(database_url: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT * FROM calls ORDER BY id")
        return [{k: v for k, v in dict(r).items() if k != "updated_at"} for r in rows]
    finally:
        await conn.close()


async def test_a_call_becomes_rows_and_redelivery_changes_nothing(
    nats_server: NatsServer, bus: Bus, database_url: str
) -> None:
    call = await FakeCall(bus).simple(ticket=True)
    last = await stream_last_seq(bus)
    async with projecting(nats_server.url, database_url) as projector:
        await until(lambda: projector.last_seq >= last, 10, "the projection")
    before_counts, before_rows = await counts(database_url), await calls_rows(database_url)
    assert before_counts == {
        "call_events": last,
        "transcripts": 3,  # 2 bot lines, 1 caller line
        "decisions": 3,
        "turns": 3,
        "tickets": 1,
        "calls": 1,
    }
    row = before_rows[0]
    assert str(row["id"]) == call.call_id
    assert row["ended_at"] is not None and row["duration_s"] == pytest.approx(
        call.seconds, abs=1e-3
    )
    assert (row["outcome"], row["end_outcome"], row["hung_up_by"]) == ("ticket", "hangup", "bot")
    assert row["turns"] == 1 and row["ticket"] is not None
    assert row["caller"] == "0612345678" and row["events"] == last
    # The caller finished speaking 0.3 s before the transcript; the answer played 0.05 s after
    # the say, which was 450 ms after the end of speech.
    assert row["max_wait_s"] == pytest.approx(0.5, abs=0.01)
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        lines = await conn.fetch(
            "SELECT speaker, start_s, end_s FROM transcripts ORDER BY stream_seq"
        )
        first_frame = await conn.fetchval(
            "SELECT first_frame_ms FROM decisions WHERE caller_text IS NOT NULL"
        )
    finally:
        await conn.close()
    # Each line where it was on the line: the welcome from 0.05 s for 1 s, the caller's words
    # in call-audio time, the answer 0.05 s after its say.
    assert [(r["speaker"], r["start_s"], r["end_s"]) for r in lines] == [
        ("bot", pytest.approx(0.05, abs=1e-3), pytest.approx(1.05, abs=1e-3)),
        ("caller", 0.0, pytest.approx(1.0, abs=1e-3)),
        ("bot", pytest.approx(2.4, abs=1e-3), pytest.approx(3.6, abs=1e-3)),
    ]
    assert first_frame == pytest.approx(500.0, abs=1.0)

    # Everything again, to a second durable from the first message: nothing changes.
    again = DurableConsumer(durable="archiver-again")
    async with projecting(nats_server.url, database_url, again) as projector:
        await until(lambda: projector.last_seq >= last, 10, "the projection")
        assert projector.committed == last
    assert await counts(database_url) == before_counts
    assert await calls_rows(database_url) == before_rows


async def test_tickets_one_per_call_from_requested_or_opened(
    nats_server: NatsServer, bus: Bus, database_url: str
) -> None:
    # The brain's own insert worked: `requested`, its row, then `opened` with that number.
    by_brain = FakeCall(bus, caller="0698765432")
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        number = await conn.fetchval(
            "INSERT INTO tickets (call_id, summary, status) VALUES ($1, 'brain', 'open') "
            "RETURNING number",
            by_brain.call_id,
        )
    finally:
        await conn.close()
    await by_brain.simple(ticket=True)
    await by_brain.ticket("opened", number)
    # The brain could not write (an outage): `requested` only.
    outage = await FakeCall(bus).simple(ticket=True)
    last = await stream_last_seq(bus)
    async with projecting(nats_server.url, database_url) as projector:
        await until(lambda: projector.last_seq >= last, 10, "the projection")
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        tickets = await conn.fetch("SELECT call_id::text, number, summary FROM tickets")
        calls = dict(await conn.fetch("SELECT id::text, ticket FROM calls"))
    finally:
        await conn.close()
    by_call = {t["call_id"]: t for t in tickets}
    assert len(tickets) == 2
    assert by_call[by_brain.call_id]["number"] == number
    assert by_call[by_brain.call_id]["summary"] == "brain"  # the brain's row, untouched
    assert by_call[outage.call_id]["summary"] == "box: redémarrage sans effet"
    assert calls == {by_brain.call_id: number, outage.call_id: by_call[outage.call_id]["number"]}


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_postgresql_outage_pauses_the_projection_and_loses_nothing(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    root = Path(tempfile.mkdtemp(prefix="voicebot-outage-pg-"))
    os.chmod(root, 0o755)  # the unprivileged postgres user must enter it when we are root
    pg = PostgresServer(data_dir=root / "data", port=free_port(), fast=True)
    await asyncio.to_thread(pg.start)
    try:
        await apply_schema(pg.url)
        before = [await FakeCall(bus, caller=f"06000000{i:02d}").simple() for i in range(6)]
        async with projecting(nats_server.url, pg.url, batch=8, retry_max_s=0.5) as projector:
            await until(lambda: projector.committed >= 16, 10, "the projection")
            await asyncio.to_thread(pg.stop)  # mid-projection: most of it is still to come
            assert projector.last_seq < await stream_last_seq(bus)
            during = [await FakeCall(bus).simple(ticket=True) for _ in range(3)]
            committed = projector.committed
            await asyncio.sleep(1.0)
            assert projector.committed == committed
            # It holds a batch it cannot commit, and has acknowledged nothing of it.
            info = await bus.js.consumer_info(CALLS, "archiver")
            assert info.num_ack_pending > 0
            assert info.ack_floor.stream_seq == projector.last_seq, "acked without a commit"
            await asyncio.to_thread(pg.start)
            last = await stream_last_seq(bus)
            await until(lambda: projector.last_seq >= last, 20, "the projection")
        info = await bus.js.consumer_info(CALLS, "archiver")
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        got = await counts(pg.url)
        n = len(before) + len(during)
        assert got == {
            "call_events": last,  # every message once: no loss, no duplicate
            "transcripts": 3 * n,
            "decisions": 3 * n,
            "turns": 3 * n,
            "tickets": len(during),
            "calls": n,
        }
        ended = await wait_rows(
            pg.url, "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL AND ticket IS NULL", 6
        )
        assert ended == len(before)
        with_ticket = await wait_rows(
            pg.url, "SELECT count(*) FROM calls WHERE ticket IS NOT NULL AND outcome = 'ticket'", 3
        )
        assert with_ticket == len(during), "tickets requested during the outage were created"
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(root, ignore_errors=True)


async def test_configured_stream_limits_survive_services_starting(
    nats_server: NatsServer, bus: Bus, database_url: str
) -> None:
    """The admin (`voicebot streams`, `voicebot up`) applies the configured limits; the archiver
    and every other service only check the streams at start-up and never change them."""
    cfg = config(nats_server.url, database_url)
    limits = replace(cfg.streams, calls_days=30, audio_days=2, audio_max_bytes=3 * 1024**3)
    await ensure_streams(bus.js, limits)  # what `voicebot streams` does with those variables
    async with projecting(nats_server.url, database_url):
        pass
    await ensure_streams(bus.js, manage=False)  # what every other service does when it starts
    calls, audio = (
        (await bus.js.stream_info(CALLS)).config,
        (await bus.js.stream_info(AUDIO)).config,
    )
    assert (calls.max_age, audio.max_age) == (30 * DAY_S, 2 * DAY_S)
    assert audio.max_bytes == 3 * 1024**3


async def test_a_message_postgresql_refuses_is_kept_raw_and_blocks_nothing(
    nats_server: NatsServer, bus: Bus, database_url: str
) -> None:
    call = FakeCall(bus)
    await call.start()
    await bus.publish(  # `category` must be internet or mobile in `tickets`
        subjects.event(call.call_id, "ticket"),
        schemas.Ticket(call_id=call.call_id, ts=call.t0, state="requested", category="tv"),
    )
    await call.bot_says(0.5, phrase="welcome")
    await call.end()
    after = await FakeCall(bus).simple()
    last = await stream_last_seq(bus)
    async with projecting(nats_server.url, database_url) as projector:
        await until(lambda: projector.last_seq >= last, 10, "the projection")
    got = await counts(database_url)
    assert got["call_events"] == last and got["tickets"] == 0 and got["calls"] == 2
    rows = {str(r["id"]): r for r in await calls_rows(database_url)}
    assert rows[call.call_id]["ended_at"] is not None
    assert rows[after.call_id]["outcome"] == "solved"
    info = await bus.js.consumer_info(CALLS, "archiver")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
