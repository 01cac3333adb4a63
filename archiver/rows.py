"""CALLS messages -> the rows the archiver writes. Pure: no I/O.

Every row is keyed by something a redelivery reproduces exactly (the stream sequence, or the
call and dialog turn), so writing the same message twice is a no-op in PostgreSQL.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from archiver.summary import Stored
from events import codec, schemas, subjects
from events.phrases import PHRASES

# Transport headers the server adds on delivery: not part of what was published.
_TRANSPORT_HEADERS = frozenset({"Nats-Sequence", "Nats-Time-Stamp", "Nats-Subject"})


@dataclass(frozen=True, slots=True)
class Incoming:
    """A CALLS message as delivered: stream sequence, storage time, subject, raw body."""

    seq: int
    ts: float  # when the server stored it
    subject: str
    data: bytes
    headers: dict[str, str] | None = None


class Rejected(ValueError):
    """A message the archiver cannot keep at all (no call id in its subject, not JSON)."""


def when(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)


@dataclass
class Rows:
    """What one batch writes, table by table, and its decoded events by call (for the calls'
    summaries)."""

    call_events: list[tuple[Any, ...]] = field(default_factory=list)
    transcripts: list[tuple[Any, ...]] = field(default_factory=list)
    decisions: list[tuple[Any, ...]] = field(default_factory=list)
    turns: list[tuple[Any, ...]] = field(default_factory=list)
    tickets: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[str, Stored]] = field(default_factory=list)
    undecodable: int = 0

    @property
    def calls(self) -> list[str]:
        return sorted({row[1] for row in self.call_events})


def event_row(msg: Incoming) -> tuple[tuple[Any, ...], Any]:
    """The `call_events` row of a message and its decoded event (None if it does not match
    its schema: kept as stored, not projected further)."""
    try:
        call_id = subjects.parse(msg.subject).call_id
    except subjects.BadSubject as e:
        raise Rejected(str(e)) from e
    try:
        body = json.loads(msg.data)
    except ValueError as e:
        raise Rejected(f"{msg.subject}: not JSON: {e}") from e
    try:
        event = codec.decode_subject(msg.subject, msg.data)
    except codec.BadMessage:
        event = None
    headers = {k: v for k, v in (msg.headers or {}).items() if k not in _TRANSPORT_HEADERS}
    row = (
        msg.seq,
        call_id,
        msg.subject,
        when(msg.ts),
        json.dumps(body, ensure_ascii=False),
        json.dumps(headers) if headers else None,
    )
    return row, event


def add(rows: Rows, seq: int, event: Any) -> None:
    """The projection rows of one decoded event."""
    match event:
        case schemas.Final() as f:
            rows.transcripts.append(
                (
                    seq,
                    f.call_id,
                    "caller",
                    f.text,
                    f.confidence,
                    f.start,
                    f.end,
                    when(f.ts),
                    f.provider or None,
                    None,
                    None,
                    None,
                )
            )
        case schemas.Say() as s:
            text = s.text if s.text is not None else PHRASES.get(s.phrase or "", s.phrase or "")
            rows.transcripts.append(
                (
                    seq,
                    s.call_id,
                    "bot",
                    text,
                    None,
                    None,
                    None,
                    when(s.ts),
                    None,
                    s.utterance_id,
                    s.phrase,
                    None,
                )
            )
        case schemas.Decision() as d:
            rows.decisions.append(decision_row(seq, d))
            if d.text is not None or d.state_from != d.state_to:
                rows.turns.append(
                    (
                        d.call_id,
                        d.turn,
                        d.state_from,
                        d.state_to,
                        d.intent,
                        d.text,
                        list(d.actions),
                        when(d.ts),
                    )
                )
        case schemas.Ticket() as t:
            rows.tickets.append(
                (
                    t.call_id,
                    t.state,
                    t.number,
                    t.customer_id,
                    t.category,
                    t.summary,
                    t.status,
                )
            )


def decision_row(seq: int, d: schemas.Decision) -> tuple[Any, ...]:
    lat = d.latency or schemas.Latency()
    return (
        seq,
        d.call_id,
        d.turn,
        when(d.ts),
        d.trigger,
        d.trigger_seq,
        d.state_from,
        d.state_to,
        d.intent,
        json.dumps(d.slots, ensure_ascii=False),
        d.text,
        d.nlu_source,
        d.llm_ms,
        list(d.actions),
        d.expecting,
        d.epoch,
        lat.end_of_speech_s,
        lat.transcript_ms,
        lat.nlu_ms,
        lat.say_ms,
    )


def build(messages: list[Incoming]) -> tuple[Rows, list[tuple[Incoming, str]]]:
    """The rows of a batch, and the messages rejected outright (with why)."""
    rows = Rows()
    rejected: list[tuple[Incoming, str]] = []
    for msg in messages:
        try:
            row, event = event_row(msg)
        except Rejected as e:
            rejected.append((msg, str(e)))
            continue
        rows.call_events.append(row)
        if event is None:
            rows.undecodable += 1
            continue
        add(rows, msg.seq, event)
        rows.events.append((row[1], Stored(msg.seq, event)))
    return rows, rejected
