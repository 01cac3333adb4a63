"""The sample dialog on the offline default, speech in and speech out: the recorded lines of
`voicebot call`'s default script (MBROLA French voice, 8 kHz) through the edge, offline
Whisper, the rule-based NLU and espeak-ng, as `voicebot call` plays them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pipeline import running_pipeline
from sample_dialog import SAMPLE_SAYS

from events import schemas, subjects
from events.bus import Bus
from tts_worker.providers.espeak import synthesize_8k
from voicebot.caller import SAMPLE_CALL, Caller, parse_script
from voicebot.servers import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]


async def test_sample_dialog_on_the_offline_default(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    async with running_pipeline(
        nats_server.url, database_url, tmp_path, STT_PROVIDER="whisper"
    ) as ports:
        out = io.StringIO()
        caller = Caller(
            "127.0.0.1",
            ports.audiosocket,
            parse_script(SAMPLE_CALL.read_text(), base_dir=SAMPLE_CALL.parent),
            synth=lambda text: synthesize_8k(text, "fr", 160),
            out=out,
            turn_timeout_s=25,
        )
        result = await caller.run()
        history = await bus.history(subjects.all_of(result.call_id))
    events = [e.event for e in history]
    heard = [e.text for e in events if isinstance(e, schemas.Final)]
    says = [e.phrase or "text" for e in events if isinstance(e, schemas.Say)]
    assert result.hung_up_by == "bot", (out.getvalue(), heard, says)
    assert says == SAMPLE_SAYS, heard
    decisions = [e for e in events if isinstance(e, schemas.Decision)]
    identity = next(d for d in decisions if d.intent == "inform")
    assert identity.slots.get("phone") == "0612345678", heard
    assert identity.snapshot["customer_name"] == "Pierre Dupont"
    assert decisions[-1].snapshot["outcome"] == "solved"
    finals = [e for e in events if isinstance(e, schemas.Final)]
    assert all(f.provider.startswith("whisper") and f.latency_ms is not None for f in finals)
