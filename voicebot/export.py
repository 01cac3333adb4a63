"""`voicebot export CALL_ID -o FILE`: one call's events and audio as a self-contained file.

Read from the JetStream streams (CALLS for events, AUDIO for both directions of audio). Once
the streams no longer hold the call (aged out, or `voicebot archive --delete-raw`) and a
database URL is given, it comes from the archive instead: the events from the archiver's
`call_events` table, the audio from the call's stereo MP3 (caller left, bot right), cut back
into `audio.in` messages on the call's clock and one `audio.out` utterance per playback the
edge reported. MP3 audio is lossy but on the same timeline, enough to listen to or to replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import NotFoundError

from events import streams, subjects
from events.audio import FRAME_BYTES, in_headers, out_headers
from events.auth import Login
from events.codec import BadMessage
from voicebot import recording
from voicebot.recording import Message, Recording

log = logging.getLogger("voicebot.export")

# Headers the server adds on delivery; not part of what was published.
_TRANSPORT_HEADERS = ("Nats-Sequence", "Nats-Time-Stamp", "Nats-Subject")


class ExportError(RuntimeError):
    """Nothing to export (unknown call, empty streams); the message says what was looked at."""


async def read_stream(
    nc: Client, stream: str, subject: str, *, idle_timeout_s: float = 2.0
) -> list[Message]:
    """Every stored message of `subject` in `stream`, in order, without following."""
    js = nc.jetstream(timeout=10)
    try:
        info = await js.stream_info(stream, subjects_filter=subject)
    except NotFoundError:
        return []
    if not info.state.subjects:
        return []
    cfg = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=cfg)
    out: list[Message] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_timeout_s)
            except NatsTimeout:
                log.warning("%s: stopped reading %s after %d messages", stream, subject, len(out))
                break
            meta = msg.metadata
            headers = {
                k: v for k, v in (msg.headers or {}).items() if k not in _TRANSPORT_HEADERS
            } or None
            ts = meta.timestamp.timestamp() if meta.timestamp else time.time()
            if stream == streams.CALLS:
                body = json.loads(msg.data)
                out.append(Message(stream, meta.sequence.stream, ts, msg.subject, headers, body))
            else:
                out.append(
                    Message(stream, meta.sequence.stream, ts, msg.subject, headers, data=msg.data)
                )
            if meta.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


async def read_call(
    url: str,
    call_id: str,
    *,
    audio: bool = True,
    database_url: str | None = None,
    setup: dict[str, Any] | None = None,
    login: Login | None = None,
) -> Recording:
    """A call as a `Recording`, from the streams (or the archive for the events)."""
    if not subjects.is_call_id(call_id):
        raise ExportError(f"not a call id (lower-case hyphenated UUID): {call_id!r}")
    nc = await nats.connect(
        url,
        connect_timeout=5,
        max_reconnect_attempts=2,
        name="voicebot-export",
        **(login.connect_options(url) if login is not None else {}),
    )
    try:
        events = await read_stream(nc, streams.CALLS, subjects.all_of(call_id))
        source = "streams"
        if not events and database_url is not None:
            events = await _archived(_from_archive(database_url, call_id), database_url)
            source = "postgresql"
        if not events:
            raise ExportError(f"no events of call {call_id} in the CALLS stream at {url}")
        sound: list[Message] = []
        audio_source = None
        if audio:
            for subject in (subjects.audio_in(call_id), subjects.audio_out(call_id)):
                sound += await read_stream(nc, streams.AUDIO, subject)
            audio_source = "streams" if sound else None
            if not sound and database_url is not None:
                from_mp3 = _audio_from_mp3(database_url, call_id, events)
                sound = await _archived(from_mp3, database_url)
                audio_source = "mp3" if sound else None
    finally:
        await nc.close()
    header: dict[str, Any] = {
        "format": recording.FORMAT,
        "version": recording.VERSION,
        "call_id": call_id,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": source,
        "events": len(events),
        "audio_in": sum(1 for m in sound if m.subject.endswith(".audio.in")),
        "audio_out": sum(1 for m in sound if m.subject.endswith(".audio.out")),
        "first_ts": round(events[0].ts, 6),
        "last_ts": round(events[-1].ts, 6),
        "setup": setup or {"env": {}, "sql": []},
    }
    if audio_source is not None:
        header["audio_source"] = audio_source
    return Recording(header, events + sound)


async def export_call(
    url: str,
    call_id: str,
    path: Path,
    *,
    database_url: str | None = None,
    audio: bool = True,
    setup: dict[str, Any] | None = None,
    login: Login | None = None,
) -> Path:
    """Write the call to `path` (gzip when it ends in .gz); returns the path."""
    rec = await read_call(
        url, call_id, audio=audio, database_url=database_url, setup=setup, login=login
    )
    return recording.write(rec, path)


async def _archived(read: Coroutine[Any, Any, list[Message]], database_url: str) -> list[Message]:
    """What the archive holds; a clear error when the archive cannot be read."""
    import asyncpg

    try:
        return await read
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        raise ExportError(f"not in the streams, and the archive at {database_url}: {e}") from e


async def _from_archive(database_url: str, call_id: str) -> list[Message]:
    import asyncpg

    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT stream_seq, subject, ts, body::text AS body, headers::text AS headers "
            "FROM call_events WHERE call_id = $1 ORDER BY stream_seq",
            call_id,
            timeout=30,
        )
    finally:
        await conn.close()
    return [
        Message(
            streams.CALLS,
            r["stream_seq"],
            r["ts"].timestamp(),
            r["subject"],
            json.loads(r["headers"]) if r["headers"] else None,
            json.loads(r["body"]),
        )
        for r in rows
    ]


def _decoded(messages: Iterable[Message]) -> Iterator[Any]:
    for m in messages:
        try:
            yield m.event()
        except BadMessage:
            continue  # kept as stored; it says nothing about the timeline


async def _audio_from_mp3(database_url: str, call_id: str, events: list[Message]) -> list[Message]:
    """The call's audio cut back out of its archived MP3 (see the module's docstring)."""
    import asyncpg

    from archiver import mp3, timeline

    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT mp3_path, started_at FROM calls WHERE id = $1", call_id, timeout=30
        )
    finally:
        await conn.close()
    if row is None or row["mp3_path"] is None:
        log.warning("[%s] no audio in AUDIO and no archived MP3", call_id)
        return []
    try:
        left, right, _ = await asyncio.to_thread(mp3.decode, Path(row["mp3_path"]))
    except (OSError, mp3.Mp3Error) as e:
        raise ExportError(f"the archived MP3 of {call_id} cannot be read: {e}") from e
    t0 = row["started_at"].timestamp()
    out: list[Message] = []
    for i, (t, pcm) in enumerate(timeline.split_caller(left)):
        headers = in_headers(i, t0 + t, t)
        out.append(Message(streams.AUDIO, 0, t0 + t, subjects.audio_in(call_id), headers, data=pcm))
    played = timeline.played(_decoded(m for m in events if ".playback" in m.subject))
    step = FRAME_BYTES * 10  # 200 ms messages, the contract's largest
    for utterance, pcm in timeline.split_bot(right, played, t0):
        parts = range(0, len(pcm), step)
        for seq, at in enumerate(parts):
            headers = out_headers(utterance, seq, at + step >= len(pcm))
            chunk = pcm[at : at + step]
            out.append(
                Message(streams.AUDIO, 0, t0, subjects.audio_out(call_id), headers, data=chunk)
            )
    return out
