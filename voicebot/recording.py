"""The recording format of one call (docs/recording-format.md): JSON lines, gzip optional.

Line 1 is a header `{"format": "voicebot-call", "version": 1, "call_id": ..., ...}`; every
other line is one stored message: CALLS messages with their JSON body as an object, AUDIO
messages with their raw body in base64. Readers refuse another format or a newer version.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from events import codec

FORMAT: Final = "voicebot-call"
VERSION: Final = 1


class RecordingError(ValueError):
    """A file that is not a readable recording; the message names the file and line."""


@dataclass(frozen=True)
class Message:
    """One stored message: `body` for CALLS (a JSON object), `data` for AUDIO (raw bytes)."""

    stream: str  # CALLS | AUDIO
    seq: int  # stream sequence in the original server
    ts: float  # when the server stored it (wall clock, seconds)
    subject: str
    headers: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    data: bytes = b""

    def event(self) -> Any:
        """The decoded event (a schemas struct); CALLS messages only."""
        return codec.decode_subject(self.subject, json.dumps(self.body).encode())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stream": self.stream,
            "seq": self.seq,
            "ts": round(self.ts, 6),
            "subject": self.subject,
            "headers": self.headers,
        }
        if self.body is not None:
            out["body"] = self.body
        else:
            out["data"] = base64.b64encode(self.data).decode("ascii")
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Message:
        return cls(
            stream=str(obj["stream"]),
            seq=int(obj["seq"]),
            ts=float(obj["ts"]),
            subject=str(obj["subject"]),
            headers=obj.get("headers"),
            body=obj.get("body"),
            data=base64.b64decode(obj["data"]) if "data" in obj else b"",
        )


@dataclass
class Recording:
    header: dict[str, Any]
    messages: list[Message] = field(default_factory=list)

    @property
    def call_id(self) -> str:
        return str(self.header["call_id"])

    @property
    def setup(self) -> dict[str, Any]:
        """What the pipeline needs to reproduce the call: {"env": {...}, "sql": [...]}."""
        setup: dict[str, Any] = self.header.get("setup") or {}
        return setup

    def calls(self) -> list[Message]:
        return [m for m in self.messages if m.stream == "CALLS"]

    def audio(self, direction: str = "in") -> list[Message]:
        suffix = f".audio.{direction}"
        return [m for m in self.messages if m.stream == "AUDIO" and m.subject.endswith(suffix)]

    def events(self) -> list[Any]:
        return [m.event() for m in self.calls()]


def write(recording: Recording, path: Path) -> Path:
    """Write `path` (gzip when it ends in .gz); returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(recording.header, ensure_ascii=False)]
    lines += [
        json.dumps(m.to_json(), ensure_ascii=False, separators=(",", ":"))
        for m in recording.messages
    ]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    # mtime=0: the same call gives the same bytes, which keeps the corpus diffable.
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def read(path: Path) -> Recording:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return _parse(path, iter(f))
    except (OSError, EOFError) as e:
        raise RecordingError(f"{path}: {e}") from e


def _parse(path: Path, lines: Iterator[str]) -> Recording:
    try:
        header = json.loads(next(lines))
    except (StopIteration, ValueError) as e:
        raise RecordingError(f"{path}:1: no JSON header ({e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RecordingError(f"{path}:1: not a {FORMAT} recording")
    if not isinstance(header.get("version"), int) or header["version"] > VERSION:
        raise RecordingError(
            f"{path}:1: format version {header.get('version')!r}; this reader knows {VERSION}"
        )
    recording = Recording(header)
    for n, line in enumerate(lines, 2):
        if not line.strip():
            continue
        try:
            recording.messages.append(Message.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as e:
            raise RecordingError(f"{path}:{n}: bad message line ({e!r})") from e
    return recording
