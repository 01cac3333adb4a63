"""Encoding and strict decoding of control-plane messages, decoders built once."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from events import schemas
from events.subjects import BadSubject, parse

_encoder: Final = msgspec.json.Encoder()

# One decoder per subject kind; `msgspec` rejects unknown tags, wrong types and missing fields.
DECODERS: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    "event": msgspec.json.Decoder(schemas.CallEventUnion),
    "transcript": msgspec.json.Decoder(schemas.TranscriptUnion),
    "decision": msgspec.json.Decoder(schemas.Decision),
    "say": msgspec.json.Decoder(schemas.Say),
    "playback": msgspec.json.Decoder(schemas.PlaybackUnion),
    "control": msgspec.json.Decoder(schemas.ControlUnion),
}


_EDGE_ALIVE: Final = msgspec.json.Decoder(schemas.EdgeAlive)


class BadMessage(ValueError):
    """A message that does not match its subject's schema; consumers count and skip it."""


def decode_edge_alive(data: bytes) -> schemas.EdgeAlive:
    try:
        return _EDGE_ALIVE.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise BadMessage(f"edge alive: {e}") from e


def tag_of(event: msgspec.Struct) -> str:
    """The tag a struct is encoded with (`started`, `final`, `flush`, ...)."""
    return str(type(event).__struct_config__.tag)


def encode(event: msgspec.Struct) -> bytes:
    return _encoder.encode(event)


def decode(kind: str, data: bytes) -> Any:
    try:
        decoder = DECODERS[kind]
    except KeyError:
        raise BadMessage(f"no schema for subject kind {kind!r}") from None
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as e:
        raise BadMessage(f"{kind}: {e}") from e
    except msgspec.DecodeError as e:
        raise BadMessage(f"{kind}: malformed JSON: {e}") from e


def decode_subject(subject: str, data: bytes) -> Any:
    """Decode by subject name; also checks that the body's call_id matches the subject's."""
    try:
        parsed = parse(subject)
    except BadSubject as e:
        raise BadMessage(str(e)) from e
    message = decode(parsed.kind, data)
    if message.call_id != parsed.call_id:
        raise BadMessage(f"call_id {message.call_id!r} does not match subject {subject!r}")
    if parsed.event_kind is not None and tag_of(message) != parsed.event_kind:
        raise BadMessage(f"event kind {tag_of(message)!r} does not match subject {subject!r}")
    return message
