"""AudioSocket framing: encoding and the incremental parser's errors."""

from __future__ import annotations

import uuid

import pytest

from edge.framing import (
    HANGUP_MESSAGE,
    SLIN_HEADER_320,
    Kind,
    Message,
    Parser,
    ProtocolError,
    encode,
    encode_audio,
    encode_dtmf,
    encode_uuid,
)

RAW_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678").bytes


def started_parser() -> Parser:
    p = Parser()
    assert p.feed(encode_uuid(RAW_UUID)) == [Message(Kind.UUID, RAW_UUID)]
    return p


def test_encode_layout() -> None:
    assert encode(Kind.SLIN, b"\x01\x02") == b"\x10\x00\x02\x01\x02"
    assert encode_dtmf("5") == b"\x03\x00\x015"
    assert encode(Kind.HANGUP) == HANGUP_MESSAGE
    assert SLIN_HEADER_320 + bytes(320) == encode_audio(bytes(320))


def test_encode_refuses_what_asterisk_refuses() -> None:
    with pytest.raises(ValueError, match="zero-length"):
        encode_audio(b"")
    with pytest.raises(ValueError, match="16"):
        encode_uuid(b"short")
    with pytest.raises(ValueError, match="16-bit"):
        encode(Kind.SLIN, bytes(70000))


def test_byte_by_byte_feed_yields_the_same_messages() -> None:
    stream = encode_uuid(RAW_UUID) + encode_audio(bytes(276)) + encode_dtmf("#")
    p = Parser()
    got = [m for b in stream for m in p.feed(bytes([b]))]
    assert got == [
        Message(Kind.UUID, RAW_UUID),
        Message(Kind.SLIN, bytes(276)),
        Message(Kind.DTMF, b"#"),
    ]
    assert p.buffered == 0
    p.eof()  # nothing pending: no error


def test_high_rate_audio_is_audio() -> None:
    p = started_parser()
    (msg,) = p.feed(encode(Kind.SLIN16, bytes(640)))
    assert msg.is_audio and msg.kind == 0x12


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (encode_audio(bytes(320)), "no_uuid_first"),
        (encode(Kind.UUID, b"not-a-uuid"), "bad_uuid"),
        (b"GET / HTTP/1.1\r\n", "no_uuid_first"),
    ],
)
def test_first_message_must_be_a_uuid(data: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as e:
        Parser().feed(data)
    assert e.value.code == code


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (encode(0x42, b"x"), "unknown_kind"),
        (encode(Kind.ERROR, b"\x04"), "peer_error"),
        (encode(Kind.SLIN, b""), "empty_audio"),
        (encode(Kind.SLIN16, b""), "empty_audio"),
        (encode(Kind.DTMF, b"12"), "bad_dtmf"),
        (encode_uuid(RAW_UUID), "second_uuid"),
    ],
)
def test_refused_kinds_after_the_uuid(data: bytes, code: str) -> None:
    p = started_parser()
    with pytest.raises(ProtocolError) as e:
        p.feed(data)
    assert e.value.code == code


def test_header_is_refused_before_its_payload_arrives() -> None:
    p = started_parser()
    with pytest.raises(ProtocolError, match="0x42"):
        p.feed(b"\x42\xff")  # two bytes are not a header yet
        p.feed(b"\xff")  # the third completes it: refused without waiting for 64 KiB


def test_a_failed_parser_stays_failed() -> None:
    p = started_parser()
    with pytest.raises(ProtocolError):
        p.feed(encode(0x42, b""))
    with pytest.raises(ProtocolError):
        p.feed(encode_audio(bytes(320)))


def test_truncated_header_at_eof() -> None:
    p = started_parser()
    assert p.feed(b"\x10\x01") == []
    with pytest.raises(ProtocolError) as e:
        p.eof()
    assert e.value.code == "truncated_header"


def test_length_larger_than_the_data_at_eof() -> None:
    p = started_parser()
    assert p.feed(b"\x10\x01\x40" + bytes(100)) == []
    with pytest.raises(ProtocolError) as e:
        p.eof()
    assert e.value.code == "truncated_payload"
    assert "320" in str(e.value) and "100" in str(e.value)


def test_messages_before_a_fault_in_the_same_read_are_returned_first() -> None:
    p = Parser()
    got = p.feed(encode_uuid(RAW_UUID) + b"\x42\x00\x00")
    assert got == [Message(Kind.UUID, RAW_UUID)]  # the call opens, then the fault ends it
    assert p.failed is not None and p.failed.code == "unknown_kind"
    with pytest.raises(ProtocolError):
        p.feed(b"")


def test_client_side_parser_reads_server_output_without_uuid() -> None:
    p = Parser(server_side=False)
    got = p.feed(SLIN_HEADER_320 + bytes(320) + HANGUP_MESSAGE)
    assert [m.kind for m in got] == [Kind.SLIN, Kind.HANGUP]
    with pytest.raises(ProtocolError, match="unknown"):
        p.feed(b"\x42\x00\x00")
