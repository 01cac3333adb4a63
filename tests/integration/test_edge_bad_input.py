"""Every bad input from issue #4 over raw sockets: it ends only that call, with a counted error
and a log line, and the next call is served normally."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from pathlib import Path

import pytest
from audiosocket_peer import AudioSocketPeer
from edge_support import Recorder, edge_config, metric, running_edge

from edge.framing import Kind, encode, encode_audio, encode_uuid
from edge.server import EdgeServer
from events import audio
from events.bus import Bus

pytestmark = pytest.mark.integration

ERRORS = "voicebot_edge_protocol_errors_total"


def uuid_message(call_id: str) -> bytes:
    return encode_uuid(uuid.UUID(call_id).bytes)


def garbage(n: int, seed: int = 4) -> bytes:
    return bytes(random.Random(seed).randrange(256) for _ in range(n))


async def raw_exchange(server: EdgeServer, data: bytes, *, then_close: bool) -> bytes:
    """Send `data` on a raw socket; return everything the server sent until it closed."""
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(data)
        await writer.drain()
        if then_close:
            writer.write_eof()
        async with asyncio.timeout(5):
            received = b""
            while chunk := await reader.read(65536):
                received += chunk
        return received
    finally:
        writer.close()


async def assert_next_call_is_served(server: EdgeServer, bus: Bus) -> None:
    peer = await AudioSocketPeer.connect(*server.address)
    try:
        frames = await peer.wait_audio(5)
        assert all(len(f.payload) == audio.FRAME_BYTES for f in frames)
        assert peer.violations == [] and not peer.closed.is_set()
    finally:
        await peer.close()


# (name, bytes sent, whether the test closes its side after sending, expected error code)
CID = "6f1e2d3c-4b5a-4987-8a6b-5c4d3e2f1a0b"
PRE_UUID = [
    ("audio_first", encode_audio(bytes(320)), False, "no_uuid_first"),
    ("uuid_of_wrong_length", encode(Kind.UUID, b"1234"), False, "bad_uuid"),
    ("random_garbage", b"\x7f" + garbage(400), False, "no_uuid_first"),
    ("http_request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False, "no_uuid_first"),
    ("close_before_uuid", b"", True, "no_uuid"),
]
POST_UUID = [
    ("unknown_kind", encode(0x42, b"abc"), False, "unknown_kind"),
    ("peer_error_kind", encode(Kind.ERROR, b"\x01"), False, "peer_error"),
    ("zero_length_audio", encode(Kind.SLIN, b""), False, "empty_audio"),
    ("garbage_after_uuid", b"\x7a" + garbage(300, 9), False, "unknown_kind"),
    ("truncated_header_then_close", b"\x10\x01", True, "truncated_header"),
    ("length_larger_than_data", b"\x10\x01\x40" + bytes(100), True, "truncated_payload"),
    (
        "disconnect_mid_frame",
        encode_audio(bytes(320)) * 3 + encode_audio(bytes(320))[:150],
        True,
        "truncated_payload",
    ),
    ("bad_dtmf_digit", encode(Kind.DTMF, b"x"), False, "bad_dtmf"),
    ("second_uuid", uuid_message(CID), False, "second_uuid"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", PRE_UUID, ids=[c[0] for c in PRE_UUID])
async def test_bad_opening(
    bus: Bus,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, bytes, bool, str],
) -> None:
    _name, data, then_close, code = case
    before = metric(ERRORS, {"kind": code})
    async with running_edge(bus, edge_config(tmp_path)) as server:
        with caplog.at_level(logging.WARNING, logger="edge"):
            received = await raw_exchange(server, data, then_close=then_close)
        assert received == b""  # refused before any call existed: nothing was played
        assert metric(ERRORS, {"kind": code}) == before + 1
        assert any(code in r.getMessage() for r in caplog.records)
        assert server.calls == {}
        await assert_next_call_is_served(server, bus)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", POST_UUID, ids=[c[0] for c in POST_UUID])
async def test_bad_message_in_a_call(
    bus: Bus,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, bytes, bool, str],
) -> None:
    name, data, then_close, code = case
    before = metric(ERRORS, {"kind": code})
    call_id = CID if name == "second_uuid" else str(uuid.uuid4())
    async with running_edge(bus, edge_config(tmp_path)) as server:
        rec = await Recorder.start(bus, call_id)
        other = await AudioSocketPeer.connect(*server.address)  # a call that must not notice
        await other.wait_audio(2)
        with caplog.at_level(logging.WARNING, logger="edge"):
            await raw_exchange(server, uuid_message(call_id) + data, then_close=then_close)
            ended = await rec.wait_event("event", "ended")
        assert ended.reason == f"protocol:{code}"
        assert rec.events("event", "error")[0].code == "protocol"
        assert metric(ERRORS, {"kind": code}) == before + 1
        assert any(call_id in r.getMessage() and code in r.getMessage() for r in caplog.records)
        assert not other.closed.is_set() and other.violations == []
        assert list(server.calls) == [other.call_id]
        await other.close()
        await assert_next_call_is_served(server, bus)


@pytest.mark.timeout(20)
async def test_no_uuid_within_the_timeout(bus: Bus, tmp_path: Path) -> None:
    before = metric(ERRORS, {"kind": "uuid_timeout"})
    async with running_edge(bus, edge_config(tmp_path, uuid_timeout_s=0.3)) as server:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        received = await raw_exchange(server, b"", then_close=False)
        waited = loop.time() - t0
        assert received == b"" and 0.25 <= waited < 3
        assert metric(ERRORS, {"kind": "uuid_timeout"}) == before + 1
        await assert_next_call_is_served(server, bus)


@pytest.mark.timeout(20)
async def test_flood_faster_than_real_time_ends_the_call(bus: Bus, tmp_path: Path) -> None:
    before = metric(ERRORS, {"kind": "flood"})
    call_id = str(uuid.uuid4())
    async with running_edge(bus, edge_config(tmp_path, inbound_max_ahead_s=0.5)) as server:
        rec = await Recorder.start(bus, call_id)
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(uuid_message(call_id))
        frame = encode_audio(bytes(320))
        try:
            for _ in range(200):  # 10 minutes of audio, sent as fast as the socket takes it
                writer.write(frame * 150)
                await writer.drain()
        except ConnectionError:
            pass  # the edge hung up on us: expected
        finally:
            writer.close()
        ended = await rec.wait_event("event", "ended")
        assert ended.reason == "protocol:flood"
        # It stopped listening within the start-up backlog allowance (2 s) plus the bound.
        assert ended.frames_in < 50 * 3
        assert metric(ERRORS, {"kind": "flood"}) == before + 1
        await assert_next_call_is_served(server, bus)
        del reader


async def test_a_backlog_queued_before_the_first_tick_is_not_a_flood(
    bus: Bus, tmp_path: Path
) -> None:
    """A busy loop may read a second of audio together with the UUID: not a flood."""
    call_id = str(uuid.uuid4())
    async with running_edge(bus, edge_config(tmp_path, inbound_max_ahead_s=0.5)) as server:
        rec = await Recorder.start(bus, call_id)
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(uuid_message(call_id) + encode_audio(bytes(320)) * 60)  # 1.2 s at once
        await writer.drain()
        received = 0
        while received < 30 * 323:  # 0.6 s of the edge's paced frames: the call lives on
            chunk = await asyncio.wait_for(reader.read(4096), timeout=2)
            assert chunk, "the edge hung up"
            received += len(chunk)
        await rec.wait(lambda: len(rec.audio_in()) >= 1)
        assert rec.events("event", "ended") == []
        writer.close()
        ended = await rec.wait_event("event", "ended")
        assert ended.reason == "caller_hangup"
