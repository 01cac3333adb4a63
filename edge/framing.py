"""AudioSocket messages: encoding and an incremental parser, with no I/O.

A message is kind (1 byte), payload length (2 bytes, network order), payload. The parser is
fed whatever TCP delivered and returns whole messages; it raises `ProtocolError` with a short
`code` (the metrics label) and a message a person can act on. The server and the test peer
both use it: the server parses what Asterisk sends (`Parser(server_side=True)`), the peer
parses what the server sends.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

HEADER_BYTES: Final = 3
UUID_BYTES: Final = 16


class Kind(IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10  # 8 kHz
    SLIN12 = 0x11
    SLIN16 = 0x12
    SLIN24 = 0x13
    SLIN32 = 0x14
    SLIN44 = 0x15
    SLIN48 = 0x16
    SLIN96 = 0x17
    SLIN192 = 0x18
    ERROR = 0xFF


SAMPLE_RATES: Final[dict[int, int]] = {
    Kind.SLIN: 8000,
    Kind.SLIN12: 12000,
    Kind.SLIN16: 16000,
    Kind.SLIN24: 24000,
    Kind.SLIN32: 32000,
    Kind.SLIN44: 44100,
    Kind.SLIN48: 48000,
    Kind.SLIN96: 96000,
    Kind.SLIN192: 192000,
}

_KNOWN: Final = frozenset(int(k) for k in Kind)
_HEADER: Final = struct.Struct("!BH")

HANGUP_MESSAGE: Final = b"\x00\x00\x00"
SLIN_HEADER_320: Final = b"\x10\x01\x40"  # kind 0x10, length 320: every paced frame


class ProtocolError(ValueError):
    """The peer broke the protocol; `code` is a short stable label for logs and metrics."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Message:
    kind: int
    payload: bytes

    @property
    def is_audio(self) -> bool:
        return self.kind in SAMPLE_RATES


def is_audio_kind(kind: int) -> bool:
    return kind in SAMPLE_RATES


def encode(kind: int, payload: bytes = b"") -> bytes:
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"kind {kind} does not fit a byte")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} B does not fit a 16-bit length")
    return _HEADER.pack(kind, len(payload)) + payload


def encode_uuid(raw: bytes) -> bytes:
    if len(raw) != UUID_BYTES:
        raise ValueError(f"a UUID is {UUID_BYTES} raw bytes, got {len(raw)}")
    return encode(Kind.UUID, raw)


def encode_audio(pcm: bytes, kind: int = Kind.SLIN) -> bytes:
    if not pcm:
        raise ValueError("a zero-length audio frame kills the call on Asterisk")
    return encode(kind, pcm)


def encode_dtmf(digit: str) -> bytes:
    return encode(Kind.DTMF, digit.encode("ascii"))


class Parser:
    """Incremental decoder. `feed` returns the whole messages completed by `data`; when a
    fault follows some of them they are returned first and the fault is left in `failed`.

    With `server_side=True` (parsing what Asterisk sends) the first message must be a 16-byte
    UUID, and kinds the server must refuse raise `ProtocolError`: 0xFF (the peer reports an
    error), an unknown kind, an empty audio frame, a DTMF payload that is not one byte, a
    second UUID. After an error the parser is dead: the call ends.
    """

    def __init__(self, *, server_side: bool = True) -> None:
        self._buf = bytearray()
        self._server_side = server_side
        self._seen_first = False
        self._failed: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def failed(self) -> ProtocolError | None:
        """The fault that stopped parsing, if any; `feed` raises it when it returns nothing."""
        return self._failed

    def feed(self, data: bytes) -> list[Message]:
        if self._failed is not None:
            raise self._failed
        self._buf += data
        out: list[Message] = []
        pos = 0
        buf = self._buf
        try:
            while len(buf) - pos >= HEADER_BYTES:
                kind, length = _HEADER.unpack_from(buf, pos)
                # Validate the header before waiting for the payload: garbage is refused at once
                # rather than after up to 64 KiB of waiting.
                self._check_header(kind, length)
                end = pos + HEADER_BYTES + length
                if len(buf) < end:
                    break
                out.append(Message(kind, bytes(buf[pos + HEADER_BYTES : end])))
                self._seen_first = True
                pos = end
        except ProtocolError as e:
            self._failed = e
            if not out:
                raise
            # The messages before the fault are returned (a UUID must still open the call
            # that the fault then ends); the caller reads `failed` after handling them.
        finally:
            del buf[:pos]
        return out

    def eof(self) -> None:
        """The peer closed TCP; raises if it left a partial message behind."""
        if self._failed is None and self._buf:
            if len(self._buf) < HEADER_BYTES:
                raise ProtocolError(
                    "truncated_header",
                    f"connection closed inside a message header ({len(self._buf)} of 3 bytes)",
                )
            kind, length = _HEADER.unpack_from(self._buf, 0)
            raise ProtocolError(
                "truncated_payload",
                f"connection closed inside a message: kind 0x{kind:02x} announced {length} B, "
                f"{len(self._buf) - HEADER_BYTES} B arrived",
            )

    def _check_header(self, kind: int, length: int) -> None:
        if not self._server_side:
            if kind not in _KNOWN:
                raise ProtocolError("unknown_kind", f"unknown message kind 0x{kind:02x}")
            return
        if not self._seen_first:
            if kind != Kind.UUID:
                raise ProtocolError(
                    "no_uuid_first",
                    f"first message must be a UUID (kind 0x01), got kind 0x{kind:02x}",
                )
            if length != UUID_BYTES:
                raise ProtocolError(
                    "bad_uuid", f"UUID message must carry 16 bytes, announced {length}"
                )
            return
        if kind == Kind.UUID:
            raise ProtocolError("second_uuid", "a second UUID message in the same call")
        if kind == Kind.ERROR:
            raise ProtocolError("peer_error", "the peer sent an error message (kind 0xff)")
        if kind in SAMPLE_RATES:
            if length == 0:
                raise ProtocolError("empty_audio", f"zero-length audio frame (kind 0x{kind:02x})")
            return
        if kind == Kind.DTMF:
            if length != 1:
                raise ProtocolError("bad_dtmf", f"DTMF message must carry 1 byte, got {length}")
            return
        if kind == Kind.HANGUP:
            return  # Asterisk never sends it, but a peer saying goodbye is not an error
        raise ProtocolError("unknown_kind", f"unknown message kind 0x{kind:02x}")
