"""PostgreSQL writes of the projection: one transaction per batch (asyncpg).

Each table gets one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING` per batch, so
a batch of hundreds of messages is a handful of statements. The calls a batch touches are
locked (transaction-scoped advisory locks, in a fixed order) before anything is written: two
archivers sharing the durable consumer then summarise a call one after the other, each seeing
the other's committed events.

A call's `calls` row is written in the transaction of every batch that stores new events of
it, from the archiver's running summary of the call, with the batch's new events folded in.
The summary is trusted only if the row still carries its `events` and `last_seq`: if another
archiver wrote the row since (it shares the consumer), if the archiver has none (a restart),
or if an event comes late, it is rebuilt from the call's stored events, which are the truth.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

import asyncpg

from archiver.rows import Rows, when
from archiver.running_summary import RunningSummaries, RunningSummary
from archiver.summary import BotLine, CallSummary, Stored
from events import codec

QUERY_TIMEOUT_S: Final = 10.0

# Errors about the data of one message (a value out of range, a constraint): retrying the same
# message cannot help. Everything else (connection lost, server shutting down) is retried.
PERMANENT: Final = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)

_LOCK_CALLS = """
SELECT pg_advisory_xact_lock(k)
FROM (SELECT hashtextextended(c, 0) AS k FROM unnest($1::text[]) AS c ORDER BY k) AS ordered
"""

_CALL_EVENTS = """
INSERT INTO call_events (stream_seq, call_id, subject, ts, body, headers)
SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::jsonb[],
                     $6::jsonb[])
ON CONFLICT (stream_seq) DO NOTHING
RETURNING stream_seq
"""

_TRANSCRIPTS = """
INSERT INTO transcripts (stream_seq, call_id, speaker, text, confidence, start_s, end_s, ts,
                         provider, utterance_id, phrase, interrupted)
SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::real[], $6::real[],
                     $7::real[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
                     $12::boolean[])
ON CONFLICT (stream_seq) DO NOTHING
"""

_DECISIONS = """
INSERT INTO decisions (stream_seq, call_id, turn, ts, trigger, trigger_seq, state_from, state_to,
                       intent, slots, caller_text, nlu_source, llm_ms, actions, expecting,
                       epoch, end_of_speech_s, transcript_ms, nlu_ms, say_ms)
SELECT s, c, t, ts, tr, ts2, sf, st, i, sl, ct, ns, lm, string_to_array(a, E'\\x1f'), e, ep,
       eos, tms, nms, sms
FROM unnest($1::bigint[], $2::uuid[], $3::int[], $4::timestamptz[], $5::text[], $6::bigint[],
            $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::text[], $12::text[],
            $13::real[], $14::text[], $15::text[], $16::int[], $17::real[], $18::real[],
            $19::real[], $20::real[])
     AS u(s, c, t, ts, tr, ts2, sf, st, i, sl, ct, ns, lm, a, e, ep, eos, tms, nms, sms)
ON CONFLICT (stream_seq) DO NOTHING
"""

_TURNS = """
INSERT INTO turns (call_id, turn, state_from, state_to, intent, caller_text, bot_actions, ts)
SELECT c, t, sf, st, i, ct, string_to_array(a, E'\\x1f'), ts
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[]) AS u(c, t, sf, st, i, ct, a, ts)
ON CONFLICT (call_id, turn) DO NOTHING
"""

# `requested` creates the call's ticket when nothing did (the brain could not reach the
# database); `opened` carries the number the brain got, kept if the row is missing here.
_TICKET_REQUESTED = """
INSERT INTO tickets (call_id, customer_id, category, summary, status)
VALUES ($1, (SELECT id FROM customers WHERE id = $2), $3, $4, $5)
ON CONFLICT (call_id) DO NOTHING
"""
_TICKET_OPENED = """
INSERT INTO tickets (call_id, number, customer_id, category, summary, status)
VALUES ($1, $6, (SELECT id FROM customers WHERE id = $2), $3, $4, $5)
ON CONFLICT DO NOTHING
"""

# What each call's row says it summarises: a running summary that says the same is current.
_MARKS = """
SELECT id::text AS id, events, last_seq FROM calls WHERE id = ANY($1::uuid[])
"""

_HISTORY = """
SELECT stream_seq, subject, body::text AS body FROM call_events
WHERE call_id = $1 ORDER BY stream_seq
"""

_UPSERT_CALL = """
INSERT INTO calls (id, caller, customer_id, started_at, ended_at, outcome, duration_s,
                   end_reason, hung_up_by, end_outcome, transfer_target, phone, category,
                   final_state, turns, dead_air_s, max_wait_s, talk_overs, repeat_prompts,
                   caller_repeats, no_input_prompts, hold_prompts, provider_errors, underruns,
                   events, last_seq, ticket, updated_at)
VALUES ($1, $2, (SELECT id FROM customers WHERE id = $3), $4, $5, $6, $7, $8, $9, $10, $11,
        $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26,
        (SELECT number FROM tickets WHERE call_id = $1), now())
ON CONFLICT (id) DO UPDATE SET
    caller = COALESCE(EXCLUDED.caller, calls.caller),
    customer_id = COALESCE(EXCLUDED.customer_id, calls.customer_id),
    started_at = EXCLUDED.started_at,
    ended_at = COALESCE(EXCLUDED.ended_at, calls.ended_at),
    outcome = COALESCE(EXCLUDED.outcome, calls.outcome),
    duration_s = COALESCE(EXCLUDED.duration_s, calls.duration_s),
    end_reason = COALESCE(EXCLUDED.end_reason, calls.end_reason),
    hung_up_by = EXCLUDED.hung_up_by, end_outcome = EXCLUDED.end_outcome,
    transfer_target = EXCLUDED.transfer_target, phone = EXCLUDED.phone,
    category = EXCLUDED.category, final_state = EXCLUDED.final_state, turns = EXCLUDED.turns,
    dead_air_s = EXCLUDED.dead_air_s, max_wait_s = EXCLUDED.max_wait_s,
    talk_overs = EXCLUDED.talk_overs, repeat_prompts = EXCLUDED.repeat_prompts,
    caller_repeats = EXCLUDED.caller_repeats, no_input_prompts = EXCLUDED.no_input_prompts,
    hold_prompts = EXCLUDED.hold_prompts, provider_errors = EXCLUDED.provider_errors,
    underruns = EXCLUDED.underruns, events = EXCLUDED.events, last_seq = EXCLUDED.last_seq,
    ticket = EXCLUDED.ticket, updated_at = now()
"""

_BOT_LINES = """
UPDATE transcripts t SET start_s = u.a, end_s = u.b, interrupted = u.cut
FROM unnest($1::bigint[], $2::real[], $3::real[], $4::boolean[]) AS u(seq, a, b, cut)
WHERE t.stream_seq = u.seq
"""

_FIRST_FRAMES = """
UPDATE decisions d SET first_frame_ms = u.ms
FROM unnest($1::bigint[], $2::real[]) AS u(seq, ms)
WHERE d.stream_seq = u.seq
"""

# Arrays of text arrays must be rectangular in PostgreSQL: actions travel joined by the ASCII
# unit separator, which no dialog action contains, and are split back in SQL.
_SEP = "\x1f"


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[]] * width


def _joined(rows: list[tuple[Any, ...]], index: int) -> list[tuple[Any, ...]]:
    return [(*r[:index], _SEP.join(r[index]), *r[index + 1 :]) for r in rows]


async def write_batch(conn: asyncpg.Connection, rows: Rows, summaries: RunningSummaries) -> int:
    """Write a batch's rows and the rows of the calls it brings new events of, in the caller's
    transaction; returns how many of its messages were new (the rest were redeliveries)."""
    await conn.execute(_LOCK_CALLS, rows.calls, timeout=QUERY_TIMEOUT_S)
    new = await conn.fetch(_CALL_EVENTS, *_columns(rows.call_events, 6), timeout=QUERY_TIMEOUT_S)
    if rows.transcripts:
        await conn.execute(_TRANSCRIPTS, *_columns(rows.transcripts, 12), timeout=QUERY_TIMEOUT_S)
    if rows.decisions:
        cols = _columns(_joined(rows.decisions, 13), 20)
        await conn.execute(_DECISIONS, *cols, timeout=QUERY_TIMEOUT_S)
    if rows.turns:
        await conn.execute(_TURNS, *_columns(_joined(rows.turns, 6), 8), timeout=QUERY_TIMEOUT_S)
    for call_id, state, number, customer_id, category, summary, status in rows.tickets:
        args = (call_id, customer_id, category, summary, status)
        if state == "opened" and number:
            await conn.execute(_TICKET_OPENED, *args, number, timeout=QUERY_TIMEOUT_S)
        else:
            await conn.execute(_TICKET_REQUESTED, *args, timeout=QUERY_TIMEOUT_S)
    stored = {r["stream_seq"] for r in new}
    by_call: defaultdict[str, list[Stored]] = defaultdict(list)
    for call_id, s in rows.events:
        if s.seq in stored:  # a redelivered event is already in its call's row
            by_call[call_id].append(s)
    if by_call:
        await _refresh_calls(conn, by_call, summaries)
    return len(new)


async def _refresh_calls(
    conn: asyncpg.Connection, new: dict[str, list[Stored]], summaries: RunningSummaries
) -> None:
    marks = {
        r["id"]: (r["events"], r["last_seq"])
        for r in await conn.fetch(_MARKS, list(new), timeout=QUERY_TIMEOUT_S)
    }
    lines: dict[int, BotLine] = {}
    waits: dict[int, float] = {}
    for call_id in sorted(new):
        running = summaries.get(call_id)
        current = running is not None and marks.get(call_id) == (running.events, running.last_seq)
        if running is None or not current or not running.add_new(new[call_id]):
            running = RunningSummary.of(call_id, await history(conn, call_id))
        summaries.put(running)
        await _upsert_call(conn, running.summary())
        changed_lines, changed_waits = running.take_changes()
        lines.update(changed_lines)
        waits.update(changed_waits)
    if lines:
        await conn.execute(
            _BOT_LINES,
            list(lines),
            [x.start_s for x in lines.values()],
            [x.end_s for x in lines.values()],
            [x.interrupted for x in lines.values()],
            timeout=QUERY_TIMEOUT_S,
        )
    if waits:
        await conn.execute(
            _FIRST_FRAMES, list(waits), list(waits.values()), timeout=QUERY_TIMEOUT_S
        )


async def history(conn: asyncpg.Connection, call_id: str) -> list[Stored]:
    """The call's stored events, decoded (bodies that no longer decode are left out)."""
    out: list[Stored] = []
    for r in await conn.fetch(_HISTORY, call_id, timeout=QUERY_TIMEOUT_S):
        try:
            event = codec.decode_subject(r["subject"], r["body"].encode())
        except codec.BadMessage:
            continue
        out.append(Stored(r["stream_seq"], event))
    return out


async def _upsert_call(conn: asyncpg.Connection, s: CallSummary) -> None:
    await conn.execute(
        _UPSERT_CALL,
        s.call_id,
        s.caller,
        s.customer_id,
        when(s.started_ts),
        when(s.ended_ts) if s.ended_ts is not None else None,
        s.outcome,
        s.duration_s,
        s.end_reason,
        s.hung_up_by,
        s.end_outcome,
        s.transfer_target,
        s.phone,
        s.category,
        s.final_state,
        s.turns,
        s.dead_air_s,
        s.max_wait_s,
        s.talk_overs,
        s.repeat_prompts,
        s.caller_repeats,
        s.no_input_prompts,
        s.hold_prompts,
        s.provider_errors,
        s.underruns,
        s.events,
        s.last_seq,
        timeout=QUERY_TIMEOUT_S,
    )
