"""CALLS -> PostgreSQL: the archiver's durable consumer, batch by batch, ack after commit.

A batch is up to `batch` messages fetched from the durable pull consumer and written in one
transaction (`store.write_batch`). Its messages are acknowledged only once that transaction
has committed. When PostgreSQL is unreachable the batch is held (kept "in progress" so the
server does not hand it to someone else) and retried with a growing pause; nothing more is
fetched meanwhile, so the consumer's backlog simply waits in the stream and is caught up when
the database returns. A message whose data PostgreSQL refuses (a constraint) is a permanent
error: the batch is retried message by message, and such a message keeps its raw
`call_events` row, is logged and acknowledged, so one bad message never blocks the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
import nats
from nats.aio.msg import Msg

from archiver import metrics, rows, store
from archiver.config import ArchiverConfig
from archiver.running_summary import RunningSummaries
from events.bus import Bus
from events.streams import ARCHIVER, CALLS, DurableConsumer, ensure_durable, ensure_streams

log = logging.getLogger("archiver")

FETCH_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 5.0


class Projector:
    def __init__(
        self, config: ArchiverConfig, bus: Bus, consumer: DurableConsumer = ARCHIVER
    ) -> None:
        self.config = config
        self.bus = bus
        self.consumer = consumer
        self.conn: asyncpg.Connection | None = None
        self.summaries = RunningSummaries()  # the calls' rows as last written, kept up to date
        self.committed = 0  # messages committed since start (tests and the banner)
        self.last_seq = 0
        self.caught_up = asyncio.Event()  # nothing pending after a commit
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._busy = False  # a batch is being written

    # --- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        # Like every service: the streams must exist (the admin applies their limits), then
        # its own durable consumer.
        await ensure_streams(self.bus.js, manage=False)
        await ensure_durable(self.bus.js, self.consumer)
        self._task = asyncio.create_task(self.run(), name="archiver-projector")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Finish the batch in hand (or hand it back after `grace_s`), then stop; a fetch
        waiting for messages is simply cancelled."""
        self._stopping.set()
        if self._task is not None:
            try:
                if self._busy:
                    await asyncio.wait_for(asyncio.shield(self._task), grace_s)
            except TimeoutError:
                pass
            finally:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self._close_db()

    async def run(self) -> None:
        psub = await self.bus.js.pull_subscribe_bind(self.consumer.durable, stream=CALLS)
        try:
            while not self._stopping.is_set():
                try:
                    msgs = await psub.fetch(self.config.batch, timeout=FETCH_TIMEOUT_S)
                except TimeoutError:  # nats' and asyncio's both mean "nothing yet"
                    self.caught_up.set()
                    continue
                except nats.errors.ConnectionClosedError:
                    return
                if not msgs:
                    continue
                self._busy = True
                try:
                    await self._project(msgs)
                except Exception:
                    # A bug must not end the projection silently: what was not acked comes back
                    # after ack_wait; meanwhile the next messages go on.
                    log.exception("projecting %d CALLS message(s) failed", len(msgs))
                    metrics.DB_ERRORS.labels("bug").inc()
                    await asyncio.sleep(1.0)
                finally:
                    self._busy = False
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    # --- one batch -----------------------------------------------------------------------

    async def _project(self, msgs: list[Msg]) -> None:
        t0 = time.perf_counter()
        incoming = [_incoming(m) for m in msgs]
        batch, rejected = rows.build(incoming)
        for msg, why in rejected:
            log.error("dropped CALLS message %d on %s: %s", msg.seq, msg.subject, why)
        keeper = asyncio.create_task(self._keep_in_progress(msgs), name="archiver-in-progress")
        try:
            new = await self._commit(batch, incoming)
        except asyncio.CancelledError:
            # Stopping without a commit: hand the batch back now rather than after ack_wait.
            for m in msgs:
                with contextlib.suppress(Exception):
                    await m.nak()
            raise
        finally:
            keeper.cancel()
        for m in msgs:
            with contextlib.suppress(Exception):  # lost acks mean redelivery: a no-op
                await m.ack()
        self.committed += len(msgs)
        self.last_seq = max(self.last_seq, *(i.seq for i in incoming))
        metrics.MESSAGES.labels("new").inc(new)
        metrics.MESSAGES.labels("duplicate").inc(len(batch.call_events) - new)
        metrics.MESSAGES.labels("undecodable").inc(batch.undecodable)
        metrics.MESSAGES.labels("rejected").inc(len(rejected))
        metrics.BATCHES.inc()
        metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)
        metrics.LAST_SEQ.set(self.last_seq)
        pending = msgs[-1].metadata.num_pending
        metrics.LAG.set(pending)
        if pending == 0:
            self.caught_up.set()
        else:
            self.caught_up.clear()

    async def _commit(self, batch: rows.Rows, incoming: list[rows.Incoming]) -> int:
        """Commit the batch, retrying while the database is away; returns the new messages."""
        pause = 0.2
        one_by_one = False
        while True:
            try:
                conn = await self._connection()
                if one_by_one:
                    new = await self._one_by_one(conn, incoming)
                else:
                    new = await self._write(conn, batch)
                metrics.DB_UP.set(1)
                return new
            except store.PERMANENT as e:
                log.warning("a batch was refused (%s): writing its messages one by one", e)
                metrics.DB_ERRORS.labels("data").inc()
                one_by_one = True
            # A server that goes away mid-commit can also leave asyncpg's protocol in a state
            # it reports as InternalClientError ("cannot switch to state 15"): the same outage.
            except (
                OSError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
                TimeoutError,
            ) as e:
                metrics.DB_UP.set(0)
                metrics.DB_ERRORS.labels(type(e).__name__).inc()
                log.warning(
                    "PostgreSQL unavailable (%s): holding the batch, retry in %.1f s",
                    e or type(e).__name__,
                    pause,
                )
                await self._close_db()
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.config.retry_max_s)

    async def _one_by_one(self, conn: asyncpg.Connection, incoming: list[rows.Incoming]) -> int:
        """Each message in its own transaction; one PostgreSQL refuses keeps its raw row only.
        (Rows already written are not written twice if this is interrupted and retried.)"""
        new = 0
        for msg in incoming:
            batch, _ = rows.build([msg])
            if not batch.call_events:
                continue
            try:
                new += await self._write(conn, batch)
            except store.PERMANENT as e:
                log.error(
                    "CALLS message %d on %s refused (%s): kept raw only", msg.seq, msg.subject, e
                )
                metrics.MESSAGES.labels("refused").inc()
                new += await self._write_raw(conn, batch)
        return new

    async def _write_raw(self, conn: asyncpg.Connection, batch: rows.Rows) -> int:
        """A refused message's raw row. It still counts in its call's row (another archiver's
        summary of the call must see the row change); if even that row is refused, the raw
        row alone, and this archiver's summary of the call is dropped."""
        try:
            return await self._write(
                conn, rows.Rows(call_events=batch.call_events, events=batch.events)
            )
        except store.PERMANENT as e:
            log.error("the row of call %s refused too (%s)", batch.calls, e)
            return await self._write(conn, rows.Rows(call_events=batch.call_events))

    async def _write(self, conn: asyncpg.Connection, batch: rows.Rows) -> int:
        """One transaction; the running summaries of its calls are forgotten if it did not
        commit (they may hold events that are not stored)."""
        try:
            async with conn.transaction():
                return await store.write_batch(conn, batch, self.summaries)
        except BaseException:
            self.summaries.forget(batch.calls)
            raise

    async def _keep_in_progress(self, msgs: list[Msg]) -> None:
        """While a batch waits for the database, tell the server we still work on it."""
        while True:
            await asyncio.sleep(self.consumer.ack_wait_s / 3)
            for m in msgs:
                with contextlib.suppress(Exception):
                    await m.in_progress()

    async def _connection(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            self.conn = await asyncpg.connect(
                self.config.database_url,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=store.QUERY_TIMEOUT_S,
            )
        return self.conn

    async def _close_db(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
            if not conn.is_closed():
                conn.terminate()


def _incoming(msg: Msg) -> rows.Incoming:
    meta = msg.metadata
    ts = meta.timestamp.timestamp() if meta.timestamp is not None else time.time()
    headers: Any = msg.headers
    return rows.Incoming(meta.sequence.stream, ts, msg.subject, msg.data, headers)
