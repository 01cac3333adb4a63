"""The whole system, speech in and speech out: `voicebot call`'s caller against the pipeline.

STT goes through the real Deepgram SDK to the loopback server in utterance mode (each voiced
stretch of the caller's audio is heard as the next scripted line), so the dialog is
deterministic; everything else is the offline default: rule-based NLU, espeak-ng voice.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pipeline import scripted_pipeline
from sample_dialog import SAMPLE_SAYS

from events import codec, schemas, subjects
from events.bus import Bus
from tts_worker.providers.espeak import synthesize_8k
from voicebot.caller import SAMPLE_DIALOG, Caller, parse_script
from voicebot.servers import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

SAMPLE_LINES = [s.arg for s in parse_script(SAMPLE_DIALOG)]


def espeak(text: str) -> bytes:
    return synthesize_8k(text, "fr", 170)


async def projected_call(database_url: str, call_id: str, within_s: float = 5.0) -> Any:
    """The call's row once the archiver has projected its end."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within_s
        while True:
            row = await conn.fetchrow(
                "SELECT outcome, customer_id, ended_at FROM calls WHERE id = $1", call_id
            )
            if row is not None and row["ended_at"] is not None:
                return row
            assert time.monotonic() < deadline, f"call {call_id} not projected in {within_s} s"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def niceness_of_child(service: str) -> int:
    """The CPU niceness of this process's child running `python -m <service>`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        # After the command's name: state, ppid (index 1) ... nice (index 16).
        if int(fields[1]) == os.getpid() and cmdline[1:3] == [b"-m", service.encode()]:
            return int(fields[16])
    raise AssertionError(f"no child process runs {service}")


async def test_sample_dialog_end_to_end(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    async with scripted_pipeline(nats_server.url, database_url, tmp_path, SAMPLE_LINES) as (
        ports,
        dg,
    ):
        out = io.StringIO()
        caller = Caller(
            "127.0.0.1",
            ports.audiosocket,
            parse_script(SAMPLE_DIALOG),
            synth=espeak,
            record=tmp_path / "bot.wav",
            out=out,
            turn_timeout_s=20,
        )
        t0 = time.monotonic()
        result = await caller.run()
        elapsed = time.monotonic() - t0
        history = await bus.history(subjects.all_of(result.call_id))
        row = await projected_call(database_url, result.call_id)
        # The archiver's work may wait: it yields the CPU to the call path.
        nice = {s: niceness_of_child(s) for s in ("archiver", "brain", "stt_worker")}
    assert nice == {"archiver": 10, "brain": 0, "stt_worker": 0}
    assert result.hung_up_by == "bot", out.getvalue()
    assert result.errors == [], out.getvalue()
    assert dg.heard == SAMPLE_LINES
    # The bot wrote one frame per 20 ms for the whole call (small slack for start and end).
    assert result.frames_in >= (elapsed - 1.0) / 0.02 * 0.95
    events = [e.event for e in history]
    says = [e for e in events if isinstance(e, schemas.Say)]
    assert [s.phrase or "text" for s in says] == SAMPLE_SAYS
    played = {e.utterance_id for e in events if isinstance(e, schemas.PlaybackFinished)}
    assert {s.utterance_id for s in says} <= played  # every phrase was heard to its end
    ended = [e for e in events if isinstance(e, schemas.Ended)]
    assert len(ended) == 1 and ended[0].outcome == "hangup"
    decisions = [e for e in events if isinstance(e, schemas.Decision)]
    assert decisions[-1].snapshot["outcome"] == "solved"
    assert (tmp_path / "bot.wav").stat().st_size > 44
    # The archiver's projection: the call's row, ended, with the dialog's outcome and customer.
    assert row["outcome"] == "solved" and row["customer_id"] is not None
    assert all(codec.tag_of(e) for e in events)
