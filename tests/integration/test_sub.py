"""`voicebot sub`: messages printed like `nats sub` does, readable JSON, audio on one line."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from events import audio, codec, schemas, subjects
from events.bus import Bus
from voicebot.servers import NatsServer
from voicebot.sub import subscribe

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]


async def test_sub_prints_subject_headers_json_and_audio_summaries(
    nats_server: NatsServer, bus: Bus
) -> None:
    cid = subjects.new_call_id()
    out = io.StringIO()
    ready = asyncio.Event()
    printer = asyncio.create_task(
        subscribe(nats_server.url, f"call.{cid}.>", count=4, out=out, ready=ready)
    )
    await asyncio.wait_for(ready.wait(), timeout=5)
    say = schemas.Say(call_id=cid, ts=1.0, utterance_id="u1", phrase="welcome")
    await bus.publish(subjects.event(cid, "started"), schemas.Started(call_id=cid, ts=1.0))
    await bus.publish_audio(subjects.audio_in(cid), bytes(320), audio.in_headers(7, 1.0, 0.14))
    await bus.publish(subjects.say(cid), say, msg_id="say-1")
    await bus.nc.publish(subjects.control(cid), b"{broken")
    assert await asyncio.wait_for(printer, timeout=5) == 4
    text = out.getvalue()
    assert f"Received on 'call.{cid}.event.started'" in text
    assert f"call.{cid}.audio.in: audio 320 B (20 ms) seq=7" in text
    assert "Nats-Msg-Id: say-1" in text
    body = next(line for line in text.splitlines() if line.startswith('{"type":"say"'))
    assert codec.decode_subject(subjects.say(cid), body.encode()) == say
    assert json.loads(body)["phrase"] == "welcome"
    assert "!! does not match the schema" in text  # the broken control message, flagged
