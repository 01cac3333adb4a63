"""`voicebot archive`: stereo MP3s of ended calls, raw audio deletion, retention.

The original's nightly `convert_logs.py`. For every ended call not archived yet: its audio is
read from the AUDIO stream, its playback timeline from PostgreSQL (`call_events`), and a
process pool builds, encodes and verifies the MP3 (`mp3.archive_call`); the result is recorded
in `calls`. With `--delete-raw`, the call's AUDIO messages are purged only once a verified MP3
is recorded (for calls archived earlier, after checking the file again). A second run finds
nothing to do. Exit code 1 when a call failed.
"""

from __future__ import annotations

import asyncio
import datetime
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from archiver import mp3, purge, raw, timeline
from archiver.config import ArchiverConfig
from archiver.connect import connections
from archiver.timeline import CallAudio, Played
from events import codec, subjects
from events.bus import Bus
from events.streams import AUDIO

TIMEOUT_S = 30.0

_CLOSE_STALE = """
UPDATE calls c SET ended_at = last.ts, end_reason = 'no_end_reported',
       duration_s = EXTRACT(EPOCH FROM last.ts - c.started_at)
FROM (SELECT call_id, max(ts) AS ts FROM call_events
      WHERE call_id IN (SELECT id FROM calls WHERE ended_at IS NULL) GROUP BY call_id) AS last
WHERE c.id = last.call_id AND c.ended_at IS NULL
  AND last.ts < now() - make_interval(secs => $1)
RETURNING c.id::text
"""

_FILTERS = """
  AND ($1::timestamptz IS NULL OR started_at >= $1)
  AND ($2::timestamptz IS NULL OR started_at < $2)
  AND ($3::uuid IS NULL OR id = $3)
"""

_TO_ARCHIVE = (
    """
SELECT id::text, started_at, duration_s FROM calls
WHERE ended_at IS NOT NULL AND archived_at IS NULL AND duration_s IS NOT NULL
  AND ended_at < now() - make_interval(secs => $4)
"""
    + _FILTERS
    + " ORDER BY started_at"
)

_RAW_LEFT = (
    """
SELECT id::text, mp3_path, duration_s, mp3_sha256 FROM calls
WHERE archived_at IS NOT NULL AND raw_deleted_at IS NULL AND mp3_path IS NOT NULL
"""
    + _FILTERS
    + " ORDER BY started_at"
)

_PLAYBACK = """
SELECT subject, body::text AS body FROM call_events
WHERE call_id = $1 AND subject = $2 ORDER BY stream_seq
"""

_RECORD = """
UPDATE calls SET mp3_path = $2, mp3_duration_s = $3, mp3_bytes = $4, mp3_sha256 = $5,
                 archive_note = $6, archived_at = now()
WHERE id = $1
"""

_RAW_DELETED = "UPDATE calls SET raw_deleted_at = now() WHERE id = $1"


@dataclass(frozen=True, kw_only=True)
class Options:
    bitrate: int
    workers: int
    delete_raw: bool = False
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    call_id: str | None = None
    dry_run: bool = False
    prune: bool = False
    retention_days: float | None = None  # None: ARCHIVE_RETENTION_DAYS


@dataclass
class Report:
    archived: list[mp3.Result] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    raw_deleted: list[str] = field(default_factory=list)
    pruned: list[purge.Erased] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class Progress:
    """A bar on a terminal; one plain line per call under cron (or any pipe)."""

    def __init__(self, out: TextIO, total: int, label: str) -> None:
        self.out, self.total, self.label = out, total, label
        self.done = 0
        self.audio_s = 0.0
        self.failed = 0
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.t0 = time.monotonic()

    def step(self, line: str, *, audio_s: float = 0.0, failed: bool = False) -> None:
        self.done += 1
        self.audio_s += audio_s
        self.failed += failed
        if not self.tty:
            print(line, file=self.out, flush=True)
            return
        if failed:  # failures stay on screen above the bar
            print(f"\r\033[K{line}", file=self.out)
        width = 30
        filled = width * self.done // max(1, self.total)
        bar = "#" * filled + "." * (width - filled)
        rate = self.audio_s / max(1e-6, time.monotonic() - self.t0)
        print(
            f"\r\033[K{self.label} [{bar}] {self.done}/{self.total} calls, "
            f"{self.audio_s / 60:.1f} min of audio ({rate:.0f}x real time)"
            + (f", {self.failed} failed" if self.failed else ""),
            end="",
            file=self.out,
            flush=True,
        )

    def close(self) -> None:
        if self.tty and self.total:
            print(file=self.out, flush=True)


def mp3_path(archive_dir: Path, call_id: str, started: datetime.datetime) -> Path:
    """ARCHIVE_DIR/YYYY/MM/DD/<call>.mp3, dated by the call's start in UTC."""
    day = started.astimezone(datetime.UTC)
    return archive_dir / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}" / f"{call_id}.mp3"


async def run(config: ArchiverConfig, options: Options, out: TextIO = sys.stdout) -> int:
    """The whole nightly run; returns the exit code."""
    report = await archive(config, options, out)
    return report.exit_code


async def archive(config: ArchiverConfig, options: Options, out: TextIO = sys.stdout) -> Report:
    async with connections(config.database_url, config.nats_url, "archive", config.nats_login) as (
        conn,
        bus,
    ):
        return await Run(config, options, conn, bus, out).all()


class Run:
    """One `voicebot archive`: its connections, its process pool, what it did."""

    def __init__(
        self,
        config: ArchiverConfig,
        options: Options,
        conn: asyncpg.Connection,
        bus: Bus,
        out: TextIO,
    ) -> None:
        self.config, self.options, self.conn, self.bus, self.out = config, options, conn, bus, out
        self.report = Report()
        self.db = asyncio.Lock()  # one connection: one statement at a time
        self.pool: ProcessPoolExecutor | None = None
        self.progress = Progress(out, 0, "archive")

    async def all(self) -> Report:
        options, out = self.options, self.out
        if not options.dry_run:
            closed = await self.conn.fetch(_CLOSE_STALE, self.config.stale_after_s)
            self.report.closed = [r["id"] for r in closed]
            for call_id in self.report.closed:
                print(f"call {call_id}: no end was reported; closed at its last event", file=out)
        filters = (options.since, options.until, options.call_id)
        todo = await self.conn.fetch(_TO_ARCHIVE, *filters, self.config.settle_s)
        leftover = await self.conn.fetch(_RAW_LEFT, *filters) if options.delete_raw else []
        if options.dry_run:
            _dry_run(self.config, todo, leftover, options, out)
        elif todo or leftover:
            # spawn: the parent runs an event loop and NATS/PostgreSQL client threads.
            self.pool = ProcessPoolExecutor(
                options.workers, mp_context=multiprocessing.get_context("spawn")
            )
            try:
                await self._work(todo, leftover)
            finally:
                self.pool.shutdown(wait=False, cancel_futures=True)
        if options.prune:
            await self._prune(options.retention_days or self.config.retention_days)
        _summary(self.report, options, todo, leftover, out)
        return self.report

    async def _work(self, todo: list[Any], leftover: list[Any]) -> None:
        self.progress = Progress(self.out, len(todo) + len(leftover), "archive")
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        for row in todo:
            queue.put_nowait(("encode", row))
        for row in leftover:
            queue.put_nowait(("check", row))

        async def worker() -> None:
            while not queue.empty():
                what, row = queue.get_nowait()
                try:
                    await (self._one_call(row) if what == "encode" else self._delete_checked(row))
                except (raw.RawAudioError, OSError, asyncpg.PostgresError, BrokenProcessPool) as e:
                    self._failed(row["id"], str(e) or type(e).__name__)

        # One more reader than processes: the next call's audio is read while one is encoded.
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.options.workers + 1):
                tg.create_task(worker())
        self.progress.close()

    def _failed(self, call_id: str, why: str) -> None:
        self.report.failed.append((call_id, why))
        self.progress.step(f"FAILED {call_id}: {why}", failed=True)

    async def _in_pool(self, fn: Any, *args: Any) -> mp3.Result:
        result: mp3.Result = await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        return result

    async def _one_call(self, row: Any) -> None:
        call_id: str = row["id"]
        async with self.db:
            played = await playback(self.conn, call_id)
        caller, bot, bad = await raw.read_audio(self.bus, call_id)
        if not caller and not bot:
            note = "no audio in the AUDIO stream (aged out or never recorded)"
            async with self.db:
                await self.conn.execute(_RECORD, call_id, None, None, None, None, note)
            self.report.skipped.append((call_id, note))
            self.progress.step(f"skipped {call_id}: {note}")
            return
        started = row["started_at"]
        audio = CallAudio(call_id, started.timestamp(), row["duration_s"], caller, bot, played)
        path = mp3_path(self.config.archive_dir, call_id, started)
        result = await self._in_pool(mp3.archive_call, mp3.Job(audio, path, self.options.bitrate))
        if result.error is not None or not result.verified:
            self._failed(call_id, result.error or "not verified")
            return
        notes = result.notes + ([f"{bad} unreadable audio message(s)"] if bad else [])
        async with self.db:
            await self.conn.execute(
                _RECORD,
                call_id,
                str(result.path),
                result.duration_s,
                result.size,
                result.sha256,
                "; ".join(notes) or None,
            )
        self.report.archived.append(result)
        line = f"archived {call_id}: {result.duration_s:.1f} s -> {result.path} ({result.size} B)"
        if notes:
            line += f" [{'; '.join(notes)}]"
        if self.options.delete_raw:  # only here: the MP3 decoded, its duration checked
            line += f"; raw audio deleted ({await self._delete_raw(call_id)} messages)"
        self.progress.step(line, audio_s=result.duration_s)

    async def _delete_checked(self, row: Any) -> None:
        """A call archived by an earlier run: check its MP3 again, then delete its raw audio."""
        call_id = row["id"]
        result = await self._in_pool(
            mp3.check_file,
            call_id,
            Path(row["mp3_path"]),
            row["duration_s"],  # the call's, as when it was archived
            row["mp3_sha256"],
        )
        if not result.verified:
            self._failed(call_id, f"raw audio kept: {result.error}")
            return
        n = await self._delete_raw(call_id)
        self.progress.step(f"raw audio of {call_id} deleted ({n} messages; MP3 checked)")

    async def _delete_raw(self, call_id: str) -> int:
        n = await raw.purge(self.bus.js, AUDIO, call_id)
        async with self.db:
            await self.conn.execute(_RAW_DELETED, call_id)
        self.report.raw_deleted.append(call_id)
        return n

    async def _prune(self, days: float) -> None:
        dry_run = self.options.dry_run
        for call in await purge.calls_older_than(self.conn, days * 86_400):
            erased = await purge.erase(self.conn, self.bus.js, call, tickets=False, dry_run=dry_run)
            self.report.pruned.append(erased)
            print(f"prune ({days:g} days): {erased.line(dry_run)}", file=self.out)


async def playback(conn: asyncpg.Connection, call_id: str) -> list[Played]:
    """The edge's playback reports of the call, as the bot track's timeline."""
    events = []
    for r in await conn.fetch(_PLAYBACK, call_id, subjects.playback(call_id)):
        try:
            events.append(codec.decode_subject(r["subject"], r["body"].encode()))
        except codec.BadMessage:
            continue
    return timeline.played(events)


def _dry_run(
    config: ArchiverConfig, todo: list[Any], leftover: list[Any], options: Options, out: TextIO
) -> None:
    for row in todo:
        path = mp3_path(config.archive_dir, row["id"], row["started_at"])
        extra = ", then delete its raw audio" if options.delete_raw else ""
        print(f"would archive {row['id']} ({row['duration_s']:.1f} s) -> {path}{extra}", file=out)
    for row in leftover:
        print(f"would check {row['mp3_path']} and delete the raw audio of {row['id']}", file=out)


def _summary(
    report: Report, options: Options, todo: list[Any], leftover: list[Any], out: TextIO
) -> None:
    if options.dry_run:
        print(f"dry run: {len(todo)} call(s) to archive, nothing written", file=out)
        return
    minutes = sum(r.duration_s for r in report.archived) / 60
    parts = [f"{len(report.archived)} call(s) archived ({minutes:.1f} min of audio)"]
    if options.delete_raw:
        parts.append(f"raw audio deleted for {len(report.raw_deleted)}")
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped (no audio)")
    if options.prune:
        parts.append(f"{len(report.pruned)} pruned")
    if report.failed:
        parts.append(f"{len(report.failed)} FAILED")
    if not (todo or leftover or report.pruned):
        parts = ["nothing to archive"]
    print("; ".join(parts), file=out, flush=True)
