"""Deleting calls: erasure of one caller (`voicebot purge --caller`) and retention (`--prune`).

A call is erased in this order: its messages in the streams (CALLS and AUDIO, purged by the
call's own subjects, so no other call is touched), then its MP3, then its rows. Streams first:
a projection still catching up could otherwise write back rows from messages not yet purged.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import asyncpg
from nats.js import JetStreamContext

from archiver import raw
from archiver.connect import connections
from events.auth import Login
from events.streams import ARCHIVER, AUDIO, CALLS

TIMEOUT_S = 30.0

# Rows of a call, table by table; tickets are the customer's file, kept by retention.
ROW_TABLES = ("call_events", "transcripts", "decisions", "turns", "tickets")

# Calls of a number: as the dialplan registered it, as the caller gave it to the dialog (the
# number understood in any decision, confirmed or not), compared in national form.
_FIND_CALLER = r"""
SELECT id::text, mp3_path, started_at FROM calls c
WHERE regexp_replace(regexp_replace(coalesce(c.caller, ''), '[^0-9+]', '', 'g'),
                     '^(\+33|0033)', '0') = $1
   OR c.phone = $1
   OR EXISTS (SELECT 1 FROM decisions d WHERE d.call_id = c.id AND d.slots->>'phone' = $1)
ORDER BY started_at
"""

_OLDER_THAN = """
SELECT id::text, mp3_path, started_at FROM calls
WHERE started_at < now() - make_interval(secs => $1) ORDER BY started_at
"""


class PurgeError(ValueError):
    pass


@dataclass(frozen=True)
class CallRef:
    call_id: str
    mp3_path: str | None
    started_at: object = None


@dataclass
class Erased:
    call_id: str
    mp3: str | None = None  # path deleted (or to delete)
    messages: dict[str, int] = field(default_factory=dict)  # stream -> messages purged
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted

    def line(self, dry_run: bool) -> str:
        verb = "would remove" if dry_run else "removed"
        msgs = ", ".join(f"{n} {s}" for s, n in self.messages.items())
        rows = ", ".join(f"{t} {n}" for t, n in self.rows.items() if n)
        mp3 = f"MP3 {self.mp3}" if self.mp3 else "no MP3"
        return (
            f"call {self.call_id}: {verb} {mp3}; stream messages: {msgs or 'none'}; "
            f"rows: {rows or 'none'}"
        )


def _remove_mp3(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".part").unlink(missing_ok=True)


def national(number: str) -> str:
    """A French number as `0XXXXXXXXX` (`+33 6 12 34 56 78`, `0033…`, `06.12…`)."""
    digits = re.sub(r"[^0-9+]", "", number)
    digits = re.sub(r"^(\+33|0033)", "0", digits)
    if not re.fullmatch(r"\+?[0-9]{3,20}", digits):
        raise PurgeError(f"not a phone number: {number!r}")
    return digits


async def calls_of_caller(conn: asyncpg.Connection, number: str) -> list[CallRef]:
    rows = await conn.fetch(_FIND_CALLER, national(number), timeout=TIMEOUT_S)
    return [CallRef(r["id"], r["mp3_path"], r["started_at"]) for r in rows]


async def calls_older_than(conn: asyncpg.Connection, age_s: float) -> list[CallRef]:
    rows = await conn.fetch(_OLDER_THAN, age_s, timeout=TIMEOUT_S)
    return [CallRef(r["id"], r["mp3_path"], r["started_at"]) for r in rows]


async def unprojected(js: JetStreamContext) -> int:
    """CALLS messages the archiver has not committed yet (a call among them is not found)."""
    try:
        info = await js.consumer_info(CALLS, ARCHIVER.durable)
    except Exception:  # no archiver consumer: nothing is projected at all
        return -1
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


async def erase(
    conn: asyncpg.Connection,
    js: JetStreamContext,
    call: CallRef,
    *,
    tickets: bool = True,
    dry_run: bool = False,
) -> Erased:
    """Everything stored about one call: stream messages, MP3, rows."""
    out = Erased(call.call_id, mp3=call.mp3_path)
    tables = ROW_TABLES if tickets else tuple(t for t in ROW_TABLES if t != "tickets")
    if dry_run:
        for stream in (CALLS, AUDIO):
            out.messages[stream] = await raw.count(js, stream, call.call_id)
        for table in tables:
            out.rows[table] = await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE call_id = $1",
                call.call_id,
                timeout=TIMEOUT_S,
            )
        out.rows["calls"] = 1
        return out
    out.messages = await raw.purge_call(js, call.call_id)
    if call.mp3_path:
        await asyncio.to_thread(_remove_mp3, Path(call.mp3_path))
    async with conn.transaction():
        for table in tables:
            status = await conn.execute(
                f"DELETE FROM {table} WHERE call_id = $1", call.call_id, timeout=TIMEOUT_S
            )
            out.rows[table] = int(status.split()[-1])
        status = await conn.execute("DELETE FROM calls WHERE id = $1", call.call_id)
        out.rows["calls"] = int(status.split()[-1])
    return out


async def purge_caller(
    database_url: str, nats_url: str, number: str, *, dry_run: bool, out: TextIO
) -> int:
    """`voicebot purge --caller NUMBER`: erase every call of that number; prints what it did."""
    wanted = national(number)
    # Erasure purges the caller's events from CALLS too: only the admin user may (nats.conf).
    async with connections(database_url, nats_url, "purge", Login.from_env("admin")) as (
        conn,
        bus,
    ):
        behind = await unprojected(bus.js)
        if behind > 0:
            print(
                f"warning: the archiver has {behind} CALLS message(s) not projected yet; a call "
                "among them is not found now: run the purge again once it has caught up",
                file=out,
            )
        calls = await calls_of_caller(conn, wanted)
        print(f"caller {wanted}: {len(calls)} call(s)", file=out)
        for _ in range(3):
            for call in calls:
                print((await erase(conn, bus.js, call, dry_run=dry_run)).line(dry_run), file=out)
            if dry_run:
                break
            # A batch the projection held while we purged may have written rows back.
            calls = await calls_of_caller(conn, wanted)
            if not calls:
                break
        if calls and not dry_run:
            print(f"error: {len(calls)} call(s) of {wanted} came back; run again", file=out)
            return 1
    return 0
