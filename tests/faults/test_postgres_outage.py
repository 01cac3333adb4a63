"""PostgreSQL stopped for 30 s in the middle of a call that needs a ticket.

No technician is free (`UPDATE technicians SET available = false`), the caller identifies
itself while the database is up, then the database stops and the caller asks for a person: the
technician look-up times out (1 s), the ticket is recorded as an `event.ticket` requested, the
insert times out, and the bot says what is true (the request is recorded, a technician will
call back) without a ticket number, then says goodbye. The caller never waits on the database.

The ticket itself is written to PostgreSQL from the `requested` event by the archiver once the
database is back (another branch, not merged yet): only the events side is asserted here. After
the 30 s, the next call's ticket gets its number again.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import asyncpg
import pytest
from fault_run import TICKET, Running, baseline, judge, place_call

from events import schemas
from events.bus import Bus
from voicebot.servers import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 30.0


async def technicians_available(url: str, available: bool) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("UPDATE technicians SET available = $1", available, timeout=10)
    finally:
        await conn.close(timeout=10)


def last_text(says: list[schemas.Say]) -> str:
    return next(s.text for s in reversed(says) if s.text)


@pytest.mark.timeout(150)
async def test_postgres_stopped_for_30_s_during_a_ticket_call(
    shared: Running, shared_bus: Bus, fault_postgres: PostgresServer
) -> None:
    await technicians_available(fault_postgres.url, False)
    restart: asyncio.Task[None] | None = None
    stopped_at: list[float] = []
    try:
        _, reference = await baseline(shared, shared_bus, TICKET)
        number = next(t.number for t in reference.of(schemas.Ticket) if t.state == "opened")
        assert number and f"numéro {number}" in last_text(reference.of(schemas.Say))

        async def back_after_outage() -> None:
            await asyncio.sleep(OUTAGE_S - (time.monotonic() - stopped_at[0]))
            await asyncio.to_thread(fault_postgres.start)

        async def stop_postgres() -> None:
            nonlocal restart
            stopped_at.append(time.monotonic())
            await asyncio.to_thread(fault_postgres.stop)
            restart = asyncio.create_task(back_after_outage())

        # Identified while the database is up; it stops before the caller asks for a person.
        result, record = await place_call(
            shared,
            shared_bus,
            TICKET,
            call_id=str(uuid.uuid4()),
            hooks={"between:2": stop_postgres},
        )
        during_outage = time.monotonic() - stopped_at[0] < OUTAGE_S
        problems = judge(
            f"PostgreSQL stopped {OUTAGE_S:.0f} s (ticket call)", TICKET, result, record, reference
        )
        assert during_outage, "the call outlasted the outage: it did not test it"
        assert problems == [], "\n".join(problems)
        tickets = record.of(schemas.Ticket)
        assert [t.state for t in tickets] == ["requested"]  # durable intent; no number yet
        said = last_text(record.of(schemas.Say))
        assert "Votre demande est enregistrée" in said
        assert not re.search(r"\d", said) and "numéro" not in said, said  # nothing invented

        assert restart is not None
        await restart
        # The database is back: the next call's ticket has a number again, the row exists.
        after, again = await place_call(shared, shared_bus, TICKET)
        opened = [t for t in again.of(schemas.Ticket) if t.state == "opened"]
        assert len(opened) == 1 and opened[0].number, again.of(schemas.Ticket)
        assert f"numéro {opened[0].number}" in last_text(again.of(schemas.Say))
        assert after.hung_up_by == "bot" and after.longest_wait <= 3.0
        conn = await asyncpg.connect(fault_postgres.url, timeout=10)
        try:
            row = await conn.fetchval(
                "SELECT number FROM tickets WHERE call_id = $1", after.call_id, timeout=10
            )
        finally:
            await conn.close(timeout=10)
        assert str(row) == opened[0].number
    finally:
        if restart is not None and not restart.done():
            await restart
        await technicians_available(fault_postgres.url, True)
