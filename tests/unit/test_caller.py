"""The test caller (`voicebot call`, the quality harness, the fault tests) against a peer that
behaves like the bot: it must never wait forever for a line the bot will not let it finish."""

from __future__ import annotations

import asyncio
import io

import numpy as np

from edge import framing
from events.audio import FRAME_BYTES
from voicebot.caller import Caller, Step

TONE = (np.sin(np.arange(FRAME_BYTES // 2) * 0.3) * 8000).astype("<i2").tobytes()


async def _bot_that_hangs_up_mid_line(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Greets for 200 ms, then hangs up after 0.5 s of the caller's line."""
    parser = framing.Parser()
    for _ in range(10):
        writer.write(framing.encode_audio(TONE))
    heard = 0
    while heard < 25:
        data = await reader.read(4096)
        if not data:
            return
        for msg in parser.feed(data):
            if msg.is_audio and np.abs(np.frombuffer(msg.payload, "<i2")).max() > 1000:
                heard += 1
    writer.write(framing.encode(framing.Kind.HANGUP))
    await writer.drain()
    writer.close()


async def test_a_caller_cut_off_mid_line_ends_its_call() -> None:
    server = await asyncio.start_server(_bot_that_hangs_up_mid_line, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ten_seconds = TONE * 500
    caller = Caller(
        "127.0.0.1",
        port,
        [Step("say", "une très longue phrase", line=1), Step("say", "encore", line=2)],
        synth=lambda _text: ten_seconds,
        out=io.StringIO(),
        end_of_turn_s=0.1,
        turn_timeout_s=5,
        final_wait_s=5,
    )
    async with server:
        async with asyncio.timeout(5):  # before the fix: stuck until the line's 10 s were sent
            result = await caller.run()
    assert result.hung_up_by == "bot"
    assert result.errors == ["line 2: the bot hung up before this step"]
    assert result.turns == 1
