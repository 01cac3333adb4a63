"""`voicebot archive` and `voicebot purge` against real NATS and PostgreSQL, on calls published
straight onto the bus (tests/integration/archive_support.py): the MP3 holds each side where it
was on the line; a second run does nothing; raw audio is deleted only after a verified MP3,
even when the run is killed mid-encode; a caller's purge leaves the other caller alone."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from archive_support import FakeCall, until
from test_archiver import config, projecting, stream_last_seq

from archiver import archive, mp3, purge, raw
from events.bus import Bus
from events.streams import AUDIO, CALLS
from voicebot.servers import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PROJECT = Path(__file__).resolve().parents[2]


def options(**changes: object) -> archive.Options:
    return replace(archive.Options(bitrate=64_000, workers=1), **changes)  # type: ignore[arg-type]


async def projected(nats_url: str, database_url: str, bus: Bus) -> None:
    last = await stream_last_seq(bus)
    async with projecting(nats_url, database_url) as projector:
        await until(lambda: projector.last_seq >= last, 10, "the projection")


def best_lag(
    track: np.ndarray, sent: bytes, at_s: float, search_s: float = 0.2
) -> tuple[float, float]:
    """Where `sent` best matches `track` near `at_s`: (lag in s, normalised correlation)."""
    x = np.frombuffer(sent, "<i2").astype(np.float64)
    lo = max(0, round(at_s * 8000) - int(search_s * 8000))
    hi = min(len(track), round(at_s * 8000) + int(search_s * 8000) + len(x))
    y = track[lo:hi].astype(np.float64)
    if len(y) < len(x):
        return 0.0, 0.0
    dots = np.correlate(y, x, mode="valid")
    energy = np.sqrt(np.convolve(y * y, np.ones(len(x)), mode="valid"))
    c = dots / (np.linalg.norm(x) * energy + 1e-9)
    i = int(np.argmax(c))
    return (lo + i) / 8000 - at_s, float(c[i])


async def row(database_url: str, sql: str, *args: object) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        return await conn.fetchrow(sql, *args)
    finally:
        await conn.close()


async def test_archive_places_each_side_and_a_second_run_is_a_no_op(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    call = FakeCall(bus)
    await call.start()
    await call.bot_says(1.0, hz=440.0, phrase="welcome")
    await call.caller_says("Bonjour", 1.2, seed=7)
    call.seconds += 1.5  # the caller's phone sends nothing: silence on the left
    await call.caller_says("Ma box", 0.8, seed=8)
    await call.bot_says(2.0, hz=660.0, cut_after=0.6)  # a barge-in cuts it
    await call.caller_says("Internet", 1.0, seed=9)
    await call.end()
    await projected(nats_server.url, database_url, bus)
    cfg = replace(config(nats_server.url, database_url), archive_dir=tmp_path / "calls")

    out = io.StringIO()
    report = await archive.archive(cfg, options(), out)
    assert report.exit_code == 0 and len(report.archived) == 1, out.getvalue()
    rec = await row(database_url, "SELECT * FROM calls WHERE id = $1", call.call_id)
    path = Path(rec["mp3_path"])
    assert path.parent.parent.parent.parent == tmp_path / "calls"  # YYYY/MM/DD/<call>.mp3
    data = await asyncio.to_thread(path.read_bytes)
    assert (rec["mp3_sha256"], rec["mp3_bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))
    left, right, rate = mp3.decode(path)
    assert rate == 8000
    assert abs(len(left) / rate - rec["duration_s"]) < 0.1
    assert rec["mp3_duration_s"] == pytest.approx(len(left) / rate, abs=1e-3)
    for t, pcm in call.caller_pcm:
        lag, c = best_lag(left, pcm, t)
        assert c > 0.8 and abs(lag) < 0.03, (t, lag, c)
        assert best_lag(right, pcm, t)[1] < 0.2
    for t, pcm in call.bot_pcm:
        lag, c = best_lag(right, pcm, t)
        assert c > 0.8 and abs(lag) < 0.03, (t, lag, c)
        assert best_lag(left, pcm, t)[1] < 0.2
    (t1, first), (t2, _) = call.caller_pcm[:2]
    silent = left[int((t1 + len(first) / 16000 + 0.05) * 8000) : int((t2 - 0.05) * 8000)]
    assert len(silent) > 1.5 * 8000 and np.abs(silent).max() < 200, "nothing sent: silence"
    cut_end = call.bot_pcm[-1][0] + 0.6
    assert np.abs(right[int((cut_end + 0.1) * 8000) :]).max() < 200, "the cut utterance stops"

    again = io.StringIO()
    report = await archive.archive(cfg, options(), again)
    assert (report.archived, report.failed, report.raw_deleted) == ([], [], [])
    assert "nothing to archive" in again.getvalue()
    assert await raw.count(bus.js, AUDIO, call.call_id) > 0, "raw audio kept without --delete-raw"

    # --delete-raw later: the MP3 is checked again, then the raw audio goes; then a no-op.
    report = await archive.archive(cfg, options(delete_raw=True), io.StringIO())
    assert report.raw_deleted == [call.call_id]
    assert await raw.count(bus.js, AUDIO, call.call_id) == 0
    assert await raw.count(bus.js, CALLS, call.call_id) > 0, "events stay"
    report = await archive.archive(cfg, options(delete_raw=True), io.StringIO())
    assert (report.archived, report.raw_deleted) == ([], [])


async def test_raw_audio_is_kept_when_the_mp3_does_not_verify(
    nats_server: NatsServer,
    bus: Bus,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call = await FakeCall(bus).simple()
    await projected(nats_server.url, database_url, bus)
    cfg = replace(config(nats_server.url, database_url), archive_dir=tmp_path / "calls")
    # The archive of an earlier run, then damaged on disk: its check must fail.
    report = await archive.archive(cfg, options(), io.StringIO())
    path = report.archived[0].path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    out = io.StringIO()
    report = await archive.archive(cfg, options(delete_raw=True), out)
    assert report.exit_code == 1 and "raw audio kept" in out.getvalue()
    assert await raw.count(bus.js, AUDIO, call.call_id) > 0


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_killed_mid_encode_nothing_is_deleted(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    call = FakeCall(bus)
    await call.start()
    for i in range(15):  # 10 minutes: encoding takes about 2 s, the window to kill it in
        await call.caller_says("…", 20.0, seed=i)
        await call.bot_says(20.0, hz=300.0 + 20 * i)
    await call.end()
    await projected(nats_server.url, database_url, bus)
    audio_messages = await raw.count(bus.js, AUDIO, call.call_id)
    archive_dir = tmp_path / "calls"
    env = {
        **os.environ,
        "NATS_URL": nats_server.url,
        "DATABASE_URL": database_url,
        "ARCHIVE_DIR": str(archive_dir),
    }
    cmd = [sys.executable, "-m", "voicebot.cli", "archive", "--delete-raw", "--bitrate", "160k"]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def part() -> Path | None:
        return next(archive_dir.rglob("*.mp3.part"), None)

    try:
        await until(lambda: (p := part()) is not None and os.path.getsize(p) > 0, 60, "encoding")
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its encoding process
    finally:
        output, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert part() is not None, "killed mid-encode: the partial file is there"
    assert list(archive_dir.rglob("*.mp3")) == [], output.decode()
    assert await raw.count(bus.js, AUDIO, call.call_id) == audio_messages
    rec = await row(database_url, "SELECT archived_at, raw_deleted_at FROM calls")
    assert tuple(rec) == (None, None)

    # The next run starts over and completes.
    cfg = replace(config(nats_server.url, database_url), archive_dir=archive_dir)
    report = await archive.archive(cfg, options(delete_raw=True), io.StringIO())
    assert report.exit_code == 0 and report.raw_deleted == [call.call_id]
    assert await raw.count(bus.js, AUDIO, call.call_id) == 0
    assert list(archive_dir.rglob("*.part")) == []


async def traces(database_url: str, js: object, call_id: str) -> dict[str, int]:
    """Everything stored about a call, by where it is."""
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        out = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t} WHERE call_id = $1", call_id)
            for t in ("call_events", "transcripts", "decisions", "turns", "tickets")
        }
        out["calls"] = await conn.fetchval("SELECT count(*) FROM calls WHERE id = $1", call_id)
        mp3_path = await conn.fetchval("SELECT mp3_path FROM calls WHERE id = $1", call_id)
    finally:
        await conn.close()
    out["mp3"] = int(mp3_path is not None and os.path.exists(mp3_path))  # noqa: ASYNC240
    for stream in (CALLS, AUDIO):
        out[stream] = await raw.count(js, stream, call_id)  # type: ignore[arg-type]
    return out


async def test_purge_removes_one_caller_and_nothing_of_another(
    nats_server: NatsServer,
    bus: Bus,
    database_url: str,
    tmp_path: Path,
) -> None:
    registered = await FakeCall(bus, caller="0612345678").simple(ticket=True)
    # Caller id withheld, but the caller gave the same number to the dialog.
    withheld = FakeCall(bus, caller=None)
    await withheld.start()
    await withheld.caller_says("zéro six douze trente-quatre…", 1.0)
    await withheld.bot_says(1.0)
    await withheld.decide(
        "IDENTIFICATION",
        text="06 12 34 56 78",
        intent="inform",
        slots={"phone": "0612345678"},
        say_ms=400.0,
    )
    await withheld.end(by="caller")
    other = await FakeCall(bus, caller="0698765432").simple(ticket=True)
    await projected(nats_server.url, database_url, bus)
    cfg = replace(config(nats_server.url, database_url), archive_dir=tmp_path / "calls")
    assert len((await archive.archive(cfg, options(), io.StringIO())).archived) == 3
    kept = await traces(database_url, bus.js, other.call_id)
    gone = [registered.call_id, withheld.call_id]
    before = [await traces(database_url, bus.js, c) for c in gone]
    for found in before:  # every kind of trace exists before (the withheld call has no ticket)
        assert all(n > 0 for kind, n in found.items() if kind != "tickets"), found
    assert before[0]["tickets"] == 1 and kept["tickets"] == 1

    code = await purge.purge_caller(
        database_url, nats_server.url, "+33 6 12 34 56 78", dry_run=True, out=(dry := io.StringIO())
    )
    assert code == 0 and "2 call(s)" in dry.getvalue() and "would remove" in dry.getvalue()
    assert [await traces(database_url, bus.js, c) for c in gone] == before

    code = await purge.purge_caller(
        database_url, nats_server.url, "06.12.34.56.78", dry_run=False, out=(done := io.StringIO())
    )
    assert code == 0, done.getvalue()
    for call_id in gone:
        assert f"call {call_id}: removed MP3" in done.getvalue()
        left = await traces(database_url, bus.js, call_id)
        assert set(left.values()) == {0}, (call_id, left)
    assert await traces(database_url, bus.js, other.call_id) == kept
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        # Nothing of the number is left anywhere in the archive's tables.
        hits = await conn.fetchval(
            "SELECT count(*) FROM call_events WHERE body::text LIKE '%0612345678%'"
        )
    finally:
        await conn.close()
    assert hits == 0


async def test_filters_and_dry_run_touch_nothing_else(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    call = await FakeCall(bus).simple()
    await projected(nats_server.url, database_url, bus)
    cfg = replace(config(nats_server.url, database_url), archive_dir=tmp_path / "calls")
    started = datetime.datetime.fromtimestamp(call.t0, tz=datetime.UTC)
    day = datetime.timedelta(days=1)
    for nothing in (
        options(call_id=str(uuid.uuid4())),
        options(until=started - day),
        options(since=started + day),
    ):
        assert (await archive.archive(cfg, nothing, io.StringIO())).archived == []
    out = io.StringIO()
    report = await archive.archive(cfg, options(dry_run=True, delete_raw=True), out)
    assert f"would archive {call.call_id}" in out.getvalue() and report.archived == []
    assert not (tmp_path / "calls").exists()
    only = options(call_id=call.call_id, since=started - day, until=started + day)
    assert [r.call_id for r in (await archive.archive(cfg, only, io.StringIO())).archived] == [
        call.call_id
    ]


async def test_prune_deletes_old_calls_and_a_call_never_reported_ended_is_closed(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    old = await FakeCall(bus, t0=time.time() - 7200).simple(ticket=True)
    # The edge died with this one: no `ended`, ever. Its clock is the real one.
    lost = FakeCall(bus, t0=time.time())
    await lost.start()
    await lost.bot_says(0.5, phrase="welcome")
    await lost.caller_says("allô ?", 0.5)
    await projected(nats_server.url, database_url, bus)
    cfg = replace(
        config(nats_server.url, database_url),
        archive_dir=tmp_path / "calls",
        stale_after_s=0.2,
        settle_s=0.0,
    )
    await asyncio.sleep(0.3)
    out = io.StringIO()
    report = await archive.archive(cfg, options(), out)
    assert report.closed == [lost.call_id], out.getvalue()
    assert {r.call_id for r in report.archived} == {old.call_id, lost.call_id}
    closed = await row(database_url, "SELECT * FROM calls WHERE id = $1", lost.call_id)
    assert closed["end_reason"] == "no_end_reported" and closed["ended_at"] is not None

    out = io.StringIO()
    report = await archive.archive(cfg, options(prune=True, retention_days=1 / 24), out)
    assert [e.call_id for e in report.pruned] == [old.call_id], out.getvalue()
    assert report.pruned[0].mp3 and not await asyncio.to_thread(Path(report.pruned[0].mp3).exists)
    gone = await traces(database_url, bus.js, old.call_id)
    assert {kind for kind, n in gone.items() if n} == {"tickets"}, gone
    assert gone["tickets"] == 1, "tickets are the customer's file: retention keeps them"
    assert (await traces(database_url, bus.js, lost.call_id))["calls"] == 1
