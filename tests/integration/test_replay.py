"""Replay of recorded calls as regression tests (issue #8).

Every recording under tests/calls/ is replayed in brain mode against the in-process pipeline
and must give the same dialog. A call placed with the test caller, exported and replayed gives
an empty diff; after a deliberate change to a dialog rule the diff shows the change.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from pipeline import Ports, scripted_pipeline

from events.bus import Bus
from tts_worker.providers.espeak import synthesize_8k
from voicebot import recording
from voicebot.caller import Caller, parse_script
from voicebot.export import ExportError, export_call
from voicebot.recording import Recording
from voicebot.replay import replay, replay_call, utterances
from voicebot.servers import NatsServer

pytestmark = [pytest.mark.integration]

CORPUS = Path(__file__).resolve().parent.parent / "calls"
RECORDINGS = sorted(CORPUS.glob("*.jsonl*"))
SPEED = 30.0  # valid for every call: replay.py waits on causes, timers keep their real time


def espeak(text: str) -> bytes:
    return synthesize_8k(text, "fr", 170)


@asynccontextmanager
async def pipeline_for(
    rec: Recording | None,
    nats_url: str,
    database_url: str,
    data_dir: Path,
    utterances: list[str] | None = None,
) -> AsyncIterator[Ports]:
    """The pipeline set up as the recording's header says (SQL on the database, brain env)."""
    setup = rec.setup if rec is not None else {}
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        for sql in setup.get("sql", []):
            await conn.execute(sql, timeout=10)
    finally:
        await conn.close()
    async with scripted_pipeline(
        nats_url, database_url, data_dir, utterances or [], **setup.get("env", {})
    ) as (ports, _):
        yield ports


def test_the_corpus_covers_the_main_variants() -> None:
    names = {p.name.split(".")[0] for p in RECORDINGS}
    assert {
        "sample",
        "mobile",
        "unknown_caller",
        "transfer",
        "ticket",
        "silence",
        "bargein_welcome",
        "dtmf_fallback",
        "provider_timeout",
        "agent",
        "keypad_fails",
        "out_of_scope",
    } <= names
    assert sum(p.stat().st_size for p in RECORDINGS) < 400_000


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name.split(".")[0])
async def test_recorded_call_replays_the_same_dialog(
    path: Path, nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    rec = recording.read(path)
    async with pipeline_for(rec, nats_server.url, database_url, tmp_path):
        result = await replay_call(bus, rec, speed=SPEED)
    assert result.diff == [], "\n".join(result.notes + result.diff)
    assert result.replay.outcome is not None
    assert result.original.turns, "a recording with no dialog proves nothing"


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_placed_call_exported_and_replayed_then_a_rule_change_shows(
    nats_server: NatsServer,
    bus: Bus,
    database_url: str,
    tmp_path: Path,
) -> None:
    script = "say: Bonjour, je veux parler à un conseiller.\n"
    async with pipeline_for(
        None,
        nats_server.url,
        database_url,
        tmp_path,
        utterances=[s.arg for s in parse_script(script)],
    ) as ports:
        caller = Caller(
            "127.0.0.1", ports.audiosocket, parse_script(script), synth=espeak, out=io.StringIO()
        )
        result = await caller.run()
        assert result.hung_up_by == "bot"
        path = await export_call(nats_server.url, result.call_id, tmp_path / "call.jsonl.gz")
        assert recording.read(path).audio("in"), "the export holds the caller's audio"

        out = io.StringIO()
        code = await replay(nats_server.url, path, mode="brain", speed=SPEED, out=out)
        assert code == 0, out.getvalue()
        assert "Same dialog" in out.getvalue()

        # A deliberate change (the brain runs in its own process, so it is made in its data):
        # no technician is free any more, so the request for a person now ends in a ticket.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE technicians SET available = false")
        finally:
            await conn.close()
        out = io.StringIO()
        # By call id this time: the recording is read from the streams.
        code = await replay(nats_server.url, result.call_id, mode="brain", speed=SPEED, out=out)
        with pytest.raises(ExportError, match="no events"):
            await export_call(nats_server.url, str(uuid.uuid4()), tmp_path / "none.jsonl")
    text = out.getvalue()
    assert code == 1, text
    assert "outcome differs" in text and "original: transfer" in text
    assert "replay:   ticket" in text
    assert "-bot: transfer" in text


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_full_mode_replays_from_the_caller_audio(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    rec = recording.read(CORPUS / "agent.jsonl.gz")
    async with pipeline_for(
        rec, nats_server.url, database_url, tmp_path, utterances=utterances(rec)
    ) as ports:
        result = await replay_call(
            bus, rec, mode="full", audiosocket=("127.0.0.1", ports.audiosocket)
        )
    assert result.diff == [], "\n".join(result.notes + result.diff)
    assert result.replay.outcome == "transfer"
