"""A call's messages in the JetStream streams: read its raw audio, count and purge by subject."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import cast

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from archiver.timeline import InChunk, OutChunk
from events import audio, subjects
from events.bus import Bus
from events.streams import AUDIO, CALLS

log = logging.getLogger("archiver.raw")

IDLE_TIMEOUT_S = 10.0  # no message for this long while some are still stored: give up


class RawAudioError(RuntimeError):
    pass


def audio_subject(call_id: str) -> str:
    return f"call.{call_id}.audio.>"


def stream_subject(stream: str, call_id: str) -> str:
    return audio_subject(call_id) if stream == AUDIO else subjects.all_of(call_id)


async def count(js: JetStreamContext, stream: str, call_id: str) -> int:
    """How many messages of the call `stream` holds."""
    try:
        info = await js.stream_info(stream, subjects_filter=stream_subject(stream, call_id))
    except NotFoundError:
        return 0
    return sum((info.state.subjects or {}).values())


async def read_audio(bus: Bus, call_id: str) -> tuple[list[InChunk], list[OutChunk], int]:
    """Both directions of the call's stored audio, and how many messages were unreadable."""
    total = await count(bus.js, AUDIO, call_id)
    caller: list[InChunk] = []
    bot: list[OutChunk] = []
    bad = 0
    if total == 0:
        return caller, bot, bad
    seen = 0
    # An async generator (typed as an iterator by the bus): closed to drop its consumer.
    reader = cast(AsyncGenerator[Msg, None], bus.replay_raw(audio_subject(call_id), stream=AUDIO))
    try:
        while seen < total:
            try:
                async with asyncio.timeout(IDLE_TIMEOUT_S):
                    msg = await anext(reader)
            except TimeoutError:
                raise RawAudioError(
                    f"read {seen} of {total} audio messages of call {call_id}, then nothing "
                    f"for {IDLE_TIMEOUT_S:.0f} s"
                ) from None
            seen += 1
            try:
                if msg.subject.endswith(".audio.in"):
                    a = audio.parse_in(msg.headers, msg.data)
                    caller.append(InChunk(a.seq, a.capture_ts, a.audio_t, a.pcm))
                else:
                    b = audio.parse_out(msg.headers, msg.data)
                    bot.append(OutChunk(b.utterance_id, b.seq, b.pcm, b.epoch))
            except audio.BadAudio as e:
                bad += 1
                log.warning("[%s] skipped an unreadable audio message: %s", call_id, e)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await reader.aclose()
    return caller, bot, bad


async def purge(js: JetStreamContext, stream: str, call_id: str) -> int:
    """Delete the call's messages from `stream` (JetStream purge by subject); returns how many."""
    n = await count(js, stream, call_id)
    if n:
        await js.purge_stream(stream, subject=stream_subject(stream, call_id))
    return n


async def purge_call(js: JetStreamContext, call_id: str) -> dict[str, int]:
    return {stream: await purge(js, stream, call_id) for stream in (CALLS, AUDIO)}
