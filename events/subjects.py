"""Subject names: `call.<id>.<kind>[.<event kind>]`, built and parsed in one place."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal[
    "event", "audio.in", "audio.out", "transcript", "decision", "say", "playback", "control"
]
KINDS: Final[tuple[str, ...]] = (
    "event",
    "audio.in",
    "audio.out",
    "transcript",
    "decision",
    "say",
    "playback",
    "control",
)
EVENT_KINDS: Final[tuple[str, ...]] = (
    "started",
    "dtmf",
    "hangup",
    "ended",
    "bargein",
    "error",
    "claimed",
    "ticket",
)
# Each edge's list of live calls, every second (core NATS: a liveness signal, not history).
EDGE_ALIVE: Final = "voicebot.edge.alive"

_CALL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class BadSubject(ValueError):
    pass


def is_call_id(text: str) -> bool:
    return bool(_CALL_ID.match(text))


def new_call_id() -> str:
    return str(uuid.uuid4())


def call_id_from_bytes(raw: bytes) -> str:
    """The AudioSocket UUID payload (16 raw bytes) as a lower-case hyphenated call id."""
    return str(uuid.UUID(bytes=raw))


def _check(call_id: str) -> str:
    if not is_call_id(call_id):
        raise BadSubject(f"not a lower-case hyphenated UUID: {call_id!r}")
    return call_id


def event(call_id: str, kind: str) -> str:
    if kind not in EVENT_KINDS:
        raise BadSubject(f"unknown event kind {kind!r}")
    return f"call.{_check(call_id)}.event.{kind}"


def audio_in(call_id: str) -> str:
    return f"call.{_check(call_id)}.audio.in"


def audio_out(call_id: str) -> str:
    return f"call.{_check(call_id)}.audio.out"


def transcript(call_id: str) -> str:
    return f"call.{_check(call_id)}.transcript"


def decision(call_id: str) -> str:
    return f"call.{_check(call_id)}.decision"


def say(call_id: str) -> str:
    return f"call.{_check(call_id)}.say"


def playback(call_id: str) -> str:
    return f"call.{_check(call_id)}.playback"


def control(call_id: str) -> str:
    return f"call.{_check(call_id)}.control"


def all_of(call_id: str) -> str:
    """Everything about one call: `call.<id>.>`."""
    return f"call.{_check(call_id)}.>"


@dataclass(frozen=True, slots=True)
class Subject:
    call_id: str
    kind: str  # one of KINDS
    event_kind: str | None = None


def parse(subject: str) -> Subject:
    parts = subject.split(".")
    if len(parts) < 3 or parts[0] != "call":
        raise BadSubject(f"not a call subject: {subject!r}")
    call_id = _check(parts[1])
    rest = parts[2:]
    if rest[0] == "event" and len(rest) == 2 and rest[1] in EVENT_KINDS:
        return Subject(call_id, "event", rest[1])
    kind = ".".join(rest)
    if kind not in KINDS or kind == "event":
        raise BadSubject(f"unknown call subject kind in {subject!r}")
    return Subject(call_id, kind)
