"""A call placed from outside through the AudioSocket port, end to end through the archive:
in PostgreSQL within a second of the hang-up; archived as a stereo MP3 with the caller on the
left and the bot on the right where each was on the line; its raw audio deleted and its
events aged out of the streams, it still exports from the archive and replays the same."""

from __future__ import annotations

import asyncio
import io
import time
import wave
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from pipeline import scripted_pipeline
from test_archive import best_lag, options
from test_archiver import config

from archiver import archive, mp3, raw
from events import schemas, subjects
from events.bus import Bus
from events.streams import AUDIO, CALLS
from tts_worker.providers.espeak import synthesize_8k
from voicebot import recording
from voicebot.caller import Caller, Line, parse_script
from voicebot.export import export_call
from voicebot.replay import replay
from voicebot.servers import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

SCRIPT = "say: Bonjour, je veux parler à un conseiller.\n"


class SentCaller(Caller):
    """The test caller, noting each line it speaks and when on the call's clock: the number
    of bot frames received so far (the edge writes one every 20 ms from the first tick)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[tuple[float, bytes]] = []

    async def _queue_pcm(self, pcm: bytes, line: Line) -> None:
        self.sent.append((self.result.frames_in * 0.02, pcm))
        await super()._queue_pcm(pcm, line)


def espeak(text: str) -> bytes:
    return synthesize_8k(text, "fr", 170)


def wav_samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def voiced_windows(samples: np.ndarray, seconds: float = 0.5) -> list[tuple[float, bytes]]:
    n = int(seconds * 8000)
    out = []
    for i in range(0, len(samples) - n + 1, n):
        x = samples[i : i + n].astype(np.float64)
        if np.sqrt(np.mean(x * x)) > 300:
            out.append((i / 8000, samples[i : i + n].tobytes()))
    return out


async def in_postgres(database_url: str, bus: Bus, call_id: str) -> bool:
    """Is everything the CALLS stream holds of the call projected, and the call closed?"""
    stored = await raw.count(bus.js, CALLS, call_id)
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        events = await conn.fetchval("SELECT count(*) FROM call_events WHERE call_id = $1", call_id)
        ended = await conn.fetchval(
            "SELECT ended_at IS NOT NULL AND outcome IS NOT NULL FROM calls WHERE id = $1", call_id
        )
    finally:
        await conn.close()
    return bool(ended) and events == stored


async def test_a_placed_call_is_archived_and_replays_from_the_archive(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    steps = parse_script(SCRIPT)
    async with scripted_pipeline(
        nats_server.url, database_url, tmp_path, [s.arg for s in steps]
    ) as (ports, _):
        caller = SentCaller(
            "127.0.0.1",
            ports.audiosocket,
            steps,
            synth=espeak,
            out=io.StringIO(),
            record=tmp_path / "bot.wav",
        )
        result = await caller.run()
        hung_up = time.monotonic()
        assert result.hung_up_by == "bot", result

        # In PostgreSQL within a second of the hang-up.
        done = False
        while not done:
            done = await in_postgres(database_url, bus, result.call_id)
            assert done or time.monotonic() - hung_up < 1.0, "not in PostgreSQL within 1 s"
            await asyncio.sleep(0.02)
        ended = await check_rows(database_url, bus, result.call_id)

        # The MP3: stereo, the caller left and the bot right where each was on the line.
        cfg = config(nats_server.url, database_url, archive_dir=tmp_path / "calls", settle_s=0)
        report = await archive.archive(cfg, options(delete_raw=True), io.StringIO())
        assert report.exit_code == 0 and [r.call_id for r in report.archived] == [result.call_id]
        left, right, rate = mp3.decode(report.archived[0].path)
        assert rate == 8000
        assert abs(len(left) / rate - ended.duration_s) < 0.1
        assert abs(len(left) / rate - result.frames_in * 0.02) < 0.1
        check_sides(left, right, caller.sent, wav_samples(tmp_path / "bot.wav"))
        assert await raw.count(bus.js, AUDIO, result.call_id) == 0, "--delete-raw"

        # The events age out of CALLS too: the export comes from the archive and replays.
        await bus.js.purge_stream(CALLS, subject=subjects.all_of(result.call_id))
        path = await export_call(
            nats_server.url,
            result.call_id,
            tmp_path / "archived.jsonl.gz",
            database_url=database_url,
        )
        rec = recording.read(path)
        assert rec.header["source"] == "postgresql" and rec.header["audio_source"] == "mp3"
        assert rec.audio("in") and rec.audio("out")
        out = io.StringIO()
        code = await replay(nats_server.url, path, mode="brain", speed=30.0, out=out)
        assert code == 0, out.getvalue()
        assert "Same dialog" in out.getvalue()


async def check_rows(database_url: str, bus: Bus, call_id: str) -> schemas.Ended:
    """The call's row, every caller transcript and every decision, as the stream has them."""
    history = [e.event for e in await bus.history(subjects.all_of(call_id))]
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        call = await conn.fetchrow("SELECT * FROM calls WHERE id = $1", call_id)
        heard = await conn.fetch(
            "SELECT text FROM transcripts WHERE call_id = $1 AND speaker = 'caller' "
            "ORDER BY stream_seq",
            call_id,
        )
        decided = await conn.fetch(
            "SELECT turn, state_to FROM decisions WHERE call_id = $1 ORDER BY stream_seq",
            call_id,
        )
    finally:
        await conn.close()
    finals = [e.text for e in history if isinstance(e, schemas.Final)]
    decisions = [(e.turn, e.state_to) for e in history if isinstance(e, schemas.Decision)]
    ended: schemas.Ended = next(e for e in history if isinstance(e, schemas.Ended))
    assert [r["text"] for r in heard] == finals and finals
    assert [tuple(r) for r in decided] == decisions
    assert call["outcome"] == "transfer"
    assert call["end_outcome"] == ended.outcome and call["transfer_target"]
    assert call["duration_s"] == pytest.approx(ended.duration_s, abs=1e-3)
    return ended


def check_sides(
    left: np.ndarray, right: np.ndarray, sent: list[tuple[float, bytes]], heard: np.ndarray
) -> None:
    """What the caller heard, half a second at a time, is on the right (each utterance is
    placed by its own playback report, so a window is the unit of alignment); each line the
    caller said is on the left."""
    voiced = 0
    for at, window in voiced_windows(heard):
        lag, c = best_lag(right, window, at, search_s=0.1)
        assert c > 0.9 and abs(lag) < 0.05, (at, lag, c)
        assert best_lag(left, window, at, search_s=0.1)[1] < 0.3
        voiced += 1
    assert voiced >= 10, "the welcome and the transfer phrase"
    for at, pcm in sent:
        lag, c = best_lag(left, pcm, at, search_s=0.2)
        assert c > 0.8 and abs(lag) < 0.1, (at, lag, c)
        assert best_lag(right, pcm, at, search_s=0.2)[1] < 0.3
