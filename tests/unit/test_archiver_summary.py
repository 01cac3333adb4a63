"""The projection's pure parts: a call's row from its events, CALLS messages into rows."""

from __future__ import annotations

import json
import random

import pytest

from archiver import rows
from archiver.config import parse_bitrate
from archiver.purge import PurgeError, national
from archiver.summary import Stored, summarize
from events import codec, schemas, subjects
from events.env import ConfigError

CID = "0b3f2c1e-1111-4222-8333-444455556666"
T0 = 1_700_000_000.0


def call_events() -> list[schemas.Base]:
    """A call: welcome, an answer after a hold phrase, a barge-in, a stale brain's decision,
    a request to repeat, the transfer."""
    e: list[schemas.Base] = [
        schemas.Started(call_id=CID, ts=T0, caller="0612345678"),
        schemas.Claimed(call_id=CID, ts=T0, epoch=1, service="brain", instance="a"),
        schemas.Say(call_id=CID, ts=T0 + 0.1, utterance_id="u1", phrase="welcome"),
        schemas.Decision(
            call_id=CID,
            ts=T0 + 0.1,
            turn=0,
            trigger="started",
            trigger_seq=1,
            state_from="INIT",
            state_to="WELCOME",
            epoch=1,
        ),
        schemas.PlaybackStarted(call_id=CID, ts=T0 + 0.12, utterance_id="u1"),
        schemas.BargeIn(call_id=CID, ts=T0 + 1.0, utterance_id="u1"),
        schemas.PlaybackInterrupted(call_id=CID, ts=T0 + 1.02, utterance_id="u1", frames=45),
        schemas.Final(
            call_id=CID,
            ts=T0 + 2.5,
            text="ma box",
            start=1.0,
            end=2.0,
            latency_ms=500.0,
        ),
        schemas.Say(call_id=CID, ts=T0 + 3.0, utterance_id="hold-1", phrase="hold"),
        schemas.PlaybackStarted(call_id=CID, ts=T0 + 3.05, utterance_id="hold-1"),
        schemas.Say(call_id=CID, ts=T0 + 3.4, utterance_id="u2", phrase="ask_identity"),
        schemas.Decision(
            call_id=CID,
            ts=T0 + 3.4,
            turn=1,
            trigger="transcript",
            trigger_seq=8,
            state_from="WELCOME",
            state_to="IDENTIFICATION",
            text="ma box",
            intent="internet",
            epoch=1,
            # End of speech at T0 + 2.0: the say went 1.4 s later; the hold phrase played
            # 1.05 s after the end of speech.
            latency=schemas.Latency(end_of_speech_s=2.0, transcript_ms=500.0, say_ms=1400.0),
            snapshot={"outcome": None, "customer_id": 1, "phone": "0612345678"},
        ),
        schemas.PlaybackFinished(call_id=CID, ts=T0 + 4.45, utterance_id="hold-1", frames=70),
        schemas.PlaybackStarted(call_id=CID, ts=T0 + 4.46, utterance_id="u2"),
        schemas.Claimed(call_id=CID, ts=T0 + 5, epoch=2, service="brain", instance="b"),
        # The replaced owner, waking up: its decision did not happen.
        schemas.Decision(
            call_id=CID,
            ts=T0 + 5.1,
            turn=2,
            trigger="transcript",
            trigger_seq=9,
            state_from="IDENTIFICATION",
            state_to="CLOSED",
            text="stale",
            epoch=1,
            snapshot={"outcome": "abandoned"},
        ),
        schemas.Say(call_id=CID, ts=T0 + 6, utterance_id="u3", phrase="repeat"),
        schemas.Decision(
            call_id=CID,
            ts=T0 + 6,
            turn=2,
            trigger="transcript",
            trigger_seq=10,
            state_from="IDENTIFICATION",
            state_to="IDENTIFICATION",
            text="pardon ?",
            intent="repeat",
            epoch=2,
            snapshot={"customer_id": 1, "phone": "0612345678"},
        ),
        schemas.Error(call_id=CID, ts=T0 + 7, source="stt", code="provider_timeout", message="x"),
        schemas.Decision(
            call_id=CID,
            ts=T0 + 8,
            turn=3,
            trigger="dtmf",
            trigger_seq=12,
            state_from="IDENTIFICATION",
            state_to="CLOSED",
            text="DTMF 9",
            epoch=2,
            snapshot={"outcome": "transfer", "customer_id": 1, "category": "internet"},
        ),
        schemas.Transfer(call_id=CID, ts=T0 + 8.1),
        schemas.Hangup(call_id=CID, ts=T0 + 9, by="bot", reason="transfer"),
        schemas.Ended(
            call_id=CID,
            ts=T0 + 9,
            reason="transfer",
            outcome="transfer:technicians",
            duration_s=9.0,
            underruns=2,
        ),
    ]
    return e


def stored(events: list[schemas.Base]) -> list[Stored]:
    return [Stored(seq, e) for seq, e in enumerate(events, 1)]


def test_a_calls_row_from_its_events() -> None:
    s = summarize(CID, stored(call_events()))
    assert (s.started_ts, s.caller, s.ended_ts, s.duration_s) == (T0, "0612345678", T0 + 9, 9.0)
    assert (s.end_reason, s.hung_up_by, s.end_outcome, s.transfer_target) == (
        "transfer",
        "bot",
        "transfer:technicians",
        "technicians",
    )
    assert (s.outcome, s.final_state, s.customer_id, s.phone, s.category) == (
        "transfer",
        "CLOSED",
        1,
        "0612345678",
        "internet",
    )
    assert s.turns == 3, "the stale owner's turn is not counted"
    assert (s.talk_overs, s.repeat_prompts, s.caller_repeats, s.hold_prompts) == (1, 1, 1, 1)
    assert (s.provider_errors, s.underruns, s.events) == (1, 2, len(call_events()))
    # The caller waited from the end of speech (T0 + 2.0) to the hold phrase (T0 + 3.05).
    decision_seq = 12
    assert s.first_frame_ms == {decision_seq: pytest.approx(1050.0, abs=0.5)}
    assert s.dead_air_s == pytest.approx(1.05, abs=1e-3) and s.max_wait_s == s.dead_air_s
    assert s.bot_lines[3].interrupted and s.bot_lines[3].start_s == pytest.approx(0.12)
    assert s.bot_lines[3].end_s == pytest.approx(0.12 + 45 * 0.02)


def test_the_row_does_not_depend_on_delivery_order_or_repeats() -> None:
    history = stored(call_events())
    expected = summarize(CID, history)
    shuffled = history + history[:7]
    random.Random(4).shuffle(shuffled)
    assert summarize(CID, shuffled) == expected


def test_a_call_still_in_progress_has_no_end() -> None:
    s = summarize(CID, stored(call_events()[:8]))
    assert (s.ended_ts, s.duration_s, s.outcome, s.end_outcome) == (None, None, None, None)
    assert s.turns == 0 and s.talk_overs == 1


def message(seq: int, event: schemas.Base, subject: str | None = None) -> rows.Incoming:
    kind = {
        schemas.CallEvent: lambda: subjects.event(CID, codec.tag_of(event)),
        schemas.Transcript: lambda: subjects.transcript(CID),
        schemas.Decision: lambda: subjects.decision(CID),
        schemas.Say: lambda: subjects.say(CID),
        schemas.Playback: lambda: subjects.playback(CID),
        schemas.Control: lambda: subjects.control(CID),
    }
    if subject is None:
        subject = next(f() for cls, f in kind.items() if isinstance(event, cls))
    return rows.Incoming(seq, T0 + seq, subject, codec.encode(event), {"Nats-Msg-Id": f"m{seq}"})


def test_messages_become_rows_keyed_by_their_sequence() -> None:
    events = call_events()
    batch, rejected = rows.build([message(seq, e) for seq, e in enumerate(events, 1)])
    assert rejected == [] and batch.undecodable == 0
    assert [r[0] for r in batch.call_events] == list(range(1, len(events) + 1))
    assert json.loads(batch.call_events[0][5]) == {"Nats-Msg-Id": "m1"}
    speakers = [(r[2], r[3]) for r in batch.transcripts]
    assert ("caller", "ma box") in speakers
    assert ("bot", "Un instant, s'il vous plaît.") in speakers, "phrase keys become their text"
    assert len(batch.decisions) == 5
    assert [r[1] for r in batch.turns] == [0, 1, 2, 2, 3], "decisions that changed something"
    assert [(c, s.seq) for c, s in batch.events] == [(CID, n) for n in range(1, len(events) + 1)]


def test_bad_messages_are_kept_raw() -> None:
    interim = schemas.Interim(call_id=CID, ts=T0, text="ma")
    bad = rows.Incoming(2, T0, subjects.transcript(CID), b'{"type": "final", "text": 3}')
    not_json = rows.Incoming(3, T0, subjects.say(CID), b"\xff")
    no_call = rows.Incoming(4, T0, "call.nope.say", b"{}")
    batch, rejected = rows.build([message(1, interim), bad, not_json, no_call])
    assert [s.seq for _, s in batch.events] == [1], "only what decodes counts in the summary"
    assert [r[0] for r in batch.call_events] == [1, 2] and batch.undecodable == 1
    assert [m.seq for m, _ in rejected] == [3, 4]


def test_tickets_travel_as_requested_or_opened() -> None:
    requested = schemas.Ticket(call_id=CID, ts=T0, state="requested", summary="s", customer_id=1)
    opened = schemas.Ticket(call_id=CID, ts=T0, state="opened", number="100042", summary="s")
    batch, _ = rows.build([message(1, requested), message(2, opened)])
    assert batch.tickets == [
        (CID, "requested", None, 1, None, "s", "open"),
        (CID, "opened", "100042", None, None, "s", "open"),
    ]


@pytest.mark.parametrize(
    ("text", "bps"), [("64k", 64_000), ("128K", 128_000), ("32", 32_000), ("160000", 160_000)]
)
def test_bitrates(text: str, bps: int) -> None:
    assert parse_bitrate(text) == bps


def test_a_bitrate_an_8khz_mp3_cannot_have_is_refused() -> None:
    with pytest.raises(ConfigError, match="ARCHIVE_BITRATE must be one of"):
        parse_bitrate("192k")
    with pytest.raises(ConfigError, match="--bitrate must be a bitrate"):
        parse_bitrate("fast", "--bitrate")


@pytest.mark.parametrize(
    "number",
    ["0612345678", "06 12 34 56 78", "+33 6 12 34 56 78", "0033612345678", "06.12.34.56.78"],
)
def test_caller_numbers_in_any_usual_form(number: str) -> None:
    assert national(number) == "0612345678"


def test_not_a_number() -> None:
    with pytest.raises(PurgeError):
        national("Pierre")
