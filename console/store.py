"""What the console reads from PostgreSQL (asyncpg, read-only queries, every one with a
timeout): the search over `calls`, one call's row, and its archived events."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from archiver.store import history
from archiver.summary import Stored
from console.callview import FIGURES

QUERY_TIMEOUT_S: Final = 10.0
MAX_RESULTS: Final = 200

_COLUMNS: Final = (
    "id::text AS call_id, extract(epoch FROM started_at)::float8 AS started_ts, "
    "extract(epoch FROM ended_at)::float8 AS ended_ts, duration_s, caller, phone, category, "
    "outcome, end_outcome, transfer_target, hung_up_by, ticket, final_state, "
    "mp3_path IS NOT NULL AS archived, " + ", ".join(FIGURES)
)
_OUTCOME = re.compile(r"^[a-z_]+(:[A-Za-z0-9_.-]+)?$")


class BadQuery(ValueError):
    """A search filter that is not valid (the message says which)."""


@dataclass(frozen=True, kw_only=True)
class Search:
    """Filters of the call search; None: not filtered on."""

    since: datetime.date | None = None  # started on or after this day (UTC)
    until: datetime.date | None = None  # started on or before this day (UTC)
    outcome: str | None = None  # the line's: hangup | transfer (any target) | transfer:<target>
    dialog_outcome: str | None = None  # solved | transfer | ticket | abandoned | ...
    ticket: str | None = None
    caller: str | None = None  # digits of the number, in any usual form
    limit: int = 50

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Search:
        def day(name: str) -> datetime.date | None:
            value = query.get(name, "").strip()
            if not value:
                return None
            try:
                return datetime.date.fromisoformat(value)
            except ValueError:
                raise BadQuery(f"{name} must be a date like 2026-05-01, got {value!r}") from None

        def word(name: str) -> str | None:
            value = query.get(name, "").strip()
            if value and not _OUTCOME.match(value):
                raise BadQuery(f"{name} must be an outcome like transfer:technicians")
            return value or None

        caller = query.get("caller", "").strip()
        digits = "".join(c for c in caller if c.isdigit())
        if caller and len(digits) < 2:
            raise BadQuery("caller needs at least two digits of the number")
        ticket = query.get("ticket", "").strip()
        if ticket and not ticket.isalnum():
            raise BadQuery("ticket must be a ticket number")
        try:
            limit = int(query.get("limit", "50") or 50)
        except ValueError:
            raise BadQuery("limit must be a number") from None
        return cls(
            since=day("from"),
            until=day("to"),
            outcome=word("outcome"),
            dialog_outcome=word("dialog_outcome"),
            ticket=ticket or None,
            caller=digits or None,
            limit=max(1, min(MAX_RESULTS, limit)),
        )

    def sql(self) -> tuple[str, list[Any]]:
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if self.since is not None:
            where.append(f"started_at >= {arg(_midnight(self.since))}")
        if self.until is not None:
            where.append(f"started_at < {arg(_midnight(self.until + datetime.timedelta(1)))}")
        if self.outcome is not None:
            if ":" in self.outcome:
                where.append(f"end_outcome = {arg(self.outcome)}")
            else:
                where.append(f"split_part(end_outcome, ':', 1) = {arg(self.outcome)}")
        if self.dialog_outcome is not None:
            where.append(f"outcome = {arg(self.dialog_outcome)}")
        if self.ticket is not None:
            where.append(f"ticket = {arg(self.ticket)}")
        if self.caller is not None:
            # +33 6 12 34 56 78, 0612345678 and 06.12.34.56.78 are one number: nine digits or
            # more compare by their last nine (the national number without its 0); fewer are
            # a part of the number.
            if len(self.caller) >= 9:
                p = arg(self.caller[-9:])
                where.append(
                    f"(right(regexp_replace(coalesce(caller, ''), '[^0-9]', '', 'g'), 9) = {p}"
                    f" OR right(regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g'), 9) = {p})"
                )
            else:
                p = arg(f"%{self.caller}%")
                where.append(
                    f"(regexp_replace(coalesce(caller, ''), '[^0-9]', '', 'g') LIKE {p}"
                    f" OR regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') LIKE {p})"
                )
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        limit = arg(self.limit)
        return f"SELECT {_COLUMNS} FROM calls {clause} ORDER BY started_at DESC LIMIT {limit}", args


def _midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)


async def search(pool: asyncpg.Pool, query: Search) -> list[dict[str, Any]]:
    sql, args = query.sql()
    rows = await pool.fetch(sql, *args, timeout=QUERY_TIMEOUT_S)
    return [dict(r) for r in rows]


async def call_row(pool: asyncpg.Pool, call_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS}, mp3_path, mp3_sha256 FROM calls WHERE id = $1",
        call_id,
        timeout=QUERY_TIMEOUT_S,
    )
    return dict(row) if row is not None else None


async def call_events(pool: asyncpg.Pool, call_id: str) -> list[Stored]:
    """The call's events as the archiver stored them (once the streams no longer hold it)."""
    async with pool.acquire(timeout=QUERY_TIMEOUT_S) as conn:
        return await history(conn, call_id)
