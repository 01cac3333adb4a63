"""`voicebot trace` shows a live call as it happens, then the stored history of a call."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pipeline import scripted_pipeline

from events.bus import Bus
from tts_worker.providers.espeak import synthesize_8k
from voicebot.caller import Caller, parse_script
from voicebot.servers import NatsServer
from voicebot.trace import trace

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]

SCRIPT = "say: Bonjour, je veux parler à un conseiller.\n"


def espeak(text: str) -> bytes:
    return synthesize_8k(text, "fr", 170)


async def until(check: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_trace_follows_a_live_call_then_replays_its_history(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    steps = parse_script(SCRIPT)
    async with scripted_pipeline(
        nats_server.url, database_url, tmp_path, [s.arg for s in steps]
    ) as (ports, _):
        live = io.StringIO()
        following = asyncio.Event()
        tracer = asyncio.create_task(
            trace(nats_server.url, None, json_out=False, out=live, ready=following)
        )
        await asyncio.wait_for(following.wait(), timeout=5)
        caller = Caller("127.0.0.1", ports.audiosocket, steps, synth=espeak, out=io.StringIO())
        call = asyncio.create_task(caller.run())

        await until(lambda: "Bot [u1]" in live.getvalue(), 15, "the welcome in the trace")
        assert not call.done()
        await until(lambda: 'Caller: "Bonjour, je veux' in live.getvalue(), 30, "the caller")
        # The caller's words show while the call is still going on.
        assert not call.done()
        assert "call ended" not in live.getvalue()
        result = await call
        await until(lambda: "call ended" in live.getvalue(), 10, "the end of the call")
        tracer.cancel()
        await asyncio.gather(tracer, return_exceptions=True)

        lines = live.getvalue().splitlines()
        short = result.call_id[:8]
        assert all(short in line for line in lines)
        text = live.getvalue()
        assert "call started" in text
        assert "WELCOME -> TRANSFER" in text or "-> TRANSFER [" in text
        assert "intent=agent" in text
        assert "first frame" in text and "ms after say" in text
        assert "-> transfer to technicians" in text
        assert "dialog outcome transfer" in text

        # With an id: the stored history first (the call is over), one JSON object a line.
        stored = io.StringIO()
        n = await asyncio.wait_for(
            trace(nats_server.url, result.call_id, json_out=True, out=stored, count=6), 10
        )
    objects = [json.loads(line) for line in stored.getvalue().splitlines()]
    assert n == 6 == len(objects)
    assert objects[0]["kind"] == "started"
    assert {o["call_id"] for o in objects} == {result.call_id}
    assert any(o["kind"] == "say" and "bienvenue" in o["text"] for o in objects)
