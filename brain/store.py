"""PostgreSQL access for the dialog: customers, technicians, tickets (asyncpg pool).

Calls, turns and transcripts are not written here: the archiver projects them from the events.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import asyncpg

from brain.dialog import Customer
from brain.identify import Candidate, likeliest
from brain.nlu.normalize import strip_accents
from brain.phone import caller_id

log = logging.getLogger("brain.store")

QUERY_TIMEOUT_S = 3.0
INIT_SQL = Path(__file__).resolve().parent.parent / "init_db.sql"


class StoreError(RuntimeError):
    pass


async def apply_schema(dsn: str, sql_path: Path = INIT_SQL, *, timeout_s: float = 30.0) -> None:
    """Apply init_db.sql (idempotent) to the database at `dsn`."""
    sql = await asyncio.to_thread(sql_path.read_text, encoding="utf-8")
    conn = await asyncpg.connect(dsn, timeout=timeout_s)
    try:
        await conn.execute(sql, timeout=timeout_s)
    finally:
        await conn.close(timeout=timeout_s)


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> Store:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, timeout=10, command_timeout=QUERY_TIMEOUT_S
        )
        if pool is None:
            raise StoreError(f"could not create a pool for {dsn}")
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def find_customer(self, phone: str) -> Customer | None:
        phone = caller_id(phone) or phone  # numbers are stored as "0612345678"
        row = await self.pool.fetchrow(
            "SELECT c.id, c.name, p.phone FROM phone_numbers p JOIN customers c "
            "ON c.id = p.customer_id WHERE p.phone = $1",
            phone,
            timeout=QUERY_TIMEOUT_S,
        )
        return Customer(row["id"], row["name"], row["phone"]) if row else None

    async def find_customer_like(self, digits: str, name: str | None) -> Customer | None:
        """The customer a misheard number and name point to (brain/identify.py), for the
        dialog to read back and the caller to confirm.

        Candidates share the first or the last four digits with what was heard, or a word of
        the name (all three indexed: init_db.sql), so a big table is not scanned; a number
        wrong at both ends is found only with its name.
        """
        digits = caller_id(digits) or digits  # "+33 6…" compared as the table keeps it
        said = re.findall(r"[^\W\d_]{3,}", (name or "").lower())
        words = sorted(set(said) | {strip_accents(w) for w in said})  # "Hélène", "Helene"
        rows = await self.pool.fetch(
            "SELECT c.id, c.name, p.phone FROM phone_numbers p JOIN customers c "
            "ON c.id = p.customer_id WHERE left(p.phone, 4) = left($1, 4) "
            "OR right(p.phone, 4) = right($1, 4) "
            "OR to_tsvector('simple', c.name) @@ websearch_to_tsquery('simple', $2) LIMIT 500",
            digits,
            " or ".join(words),
            timeout=QUERY_TIMEOUT_S,
        )
        candidates = [Candidate(r["id"], r["name"], r["phone"]) for r in rows]
        best = likeliest(name, digits, candidates)
        return Customer(best.id, best.name, best.phone) if best is not None else None

    async def find_technician(self, category: str | None) -> str | None:
        """The queue of an available technician for the category, or None."""
        queue = await self.pool.fetchval(
            "SELECT queue FROM technicians WHERE available "
            "AND ($1::text IS NULL OR $1 = ANY(categories)) ORDER BY id LIMIT 1",
            category,
            timeout=QUERY_TIMEOUT_S,
        )
        return str(queue) if queue is not None else None

    async def open_ticket(
        self,
        call_id: str,
        *,
        customer_id: int | None,
        category: str | None,
        summary: str,
        status: str,
    ) -> str:
        """One ticket per call; opening it again updates it and returns the same number."""
        number = await self.pool.fetchval(
            "INSERT INTO tickets (call_id, customer_id, category, summary, status) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id) DO UPDATE SET "
            "summary = EXCLUDED.summary, status = EXCLUDED.status, updated_at = now() "
            "RETURNING number",
            call_id,
            customer_id,
            category,
            summary,
            status,
            timeout=QUERY_TIMEOUT_S,
        )
        return str(number)
