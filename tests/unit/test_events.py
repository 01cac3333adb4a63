"""The contract: every event kind round-trips, decoding is strict, subjects parse back."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from events import codec, schemas, subjects
from events.audio import FRAME_BYTES, BadAudio, in_headers, out_headers, parse_in, parse_out

CID = "0b3f2c1e-1111-4222-8333-444455556666"
T = 1_700_000_000.25

SAMPLES: list[tuple[str, msgspec.Struct]] = [
    ("event", schemas.Started(call_id=CID, ts=T, caller="0612345678", peer="10.0.0.5:41000")),
    ("event", schemas.Dtmf(call_id=CID, ts=T, digit="5", seq=3)),
    ("event", schemas.Hangup(call_id=CID, ts=T, by="caller", reason="eof")),
    (
        "event",
        schemas.Ended(
            call_id=CID,
            ts=T,
            reason="eof",
            outcome="transfer:technicians",
            duration_s=42.5,
            frames_in=2000,
            frames_out=2100,
            underruns=3,
        ),
    ),
    ("event", schemas.BargeIn(call_id=CID, ts=T, utterance_id="u1")),
    (
        "event",
        schemas.Error(
            call_id=CID,
            ts=T,
            source="stt",
            code="provider_timeout",
            message="deepgram: no answer in 5 s",
        ),
    ),
    (
        "event",
        schemas.Claimed(
            call_id=CID, ts=T, epoch=3, service="brain", instance="host-42", takeover=True
        ),
    ),
    (
        "event",
        schemas.Ticket(
            call_id=CID,
            ts=T,
            epoch=1,
            state="requested",
            category="internet",
            summary="Pierre Dupont (internet): rappel par un technicien",
            customer_id=1,
        ),
    ),
    ("transcript", schemas.Interim(call_id=CID, ts=T, text="bonjour j'ai", confidence=0.8)),
    (
        "transcript",
        schemas.Final(
            call_id=CID,
            ts=T,
            text="Bonjour",
            confidence=0.93,
            start=1.0,
            end=1.6,
            words=(schemas.Word(word="bonjour", start=1.0, end=1.6),),
            latency_ms=210.0,
            avg_logprob=-0.3,
            no_speech_prob=0.01,
        ),
    ),
    ("transcript", schemas.UtteranceEnd(call_id=CID, ts=T, last_word_end=1.6)),
    ("transcript", schemas.SpeechStarted(call_id=CID, ts=T, at=0.98)),
    ("transcript", schemas.Gap(call_id=CID, ts=T, from_s=3.0, to_s=7.5, reason="takeover")),
    (
        "decision",
        schemas.Decision(
            call_id=CID,
            ts=T,
            turn=4,
            trigger="transcript",
            trigger_seq=17,
            state_from="DIAGNOSTIC",
            state_to="SOLUTION",
            intent="internet",
            slots={"category": "internet"},
            actions=("say_text:Essayez",),
            latency=schemas.Latency(end_of_speech_s=12.3, nlu_ms=0.4),
            snapshot={"state": "SOLUTION"},
            expecting="ack",
        ),
    ),
    ("say", schemas.Say(call_id=CID, ts=T, utterance_id="u3", phrase="welcome")),
    (
        "say",
        schemas.Say(
            call_id=CID,
            ts=T,
            utterance_id="u4",
            text="Essayez de débrancher votre box.",
            interruptible=False,
            speed=0.8,
        ),
    ),
    ("playback", schemas.PlaybackStarted(call_id=CID, ts=T, utterance_id="u3")),
    ("playback", schemas.PlaybackFinished(call_id=CID, ts=T, utterance_id="u3", frames=140)),
    (
        "playback",
        schemas.PlaybackStarted(call_id=CID, ts=T, utterance_id="edge-hold-1", origin="edge"),
    ),
    ("playback", schemas.PlaybackInterrupted(call_id=CID, ts=T, utterance_id="u3", frames=20)),
    ("control", schemas.Flush(call_id=CID, ts=T, utterance_id="u3")),
    ("control", schemas.HangupCall(call_id=CID, ts=T)),
    ("control", schemas.Transfer(call_id=CID, ts=T, target="technicians")),
]


def _subject(kind: str, event: msgspec.Struct) -> str:
    if kind == "event":
        return subjects.event(CID, codec.tag_of(event))
    return getattr(subjects, kind)(CID)


@pytest.mark.parametrize(
    ("kind", "event"), SAMPLES, ids=lambda x: getattr(x, "__name__", None) or type(x).__name__
)
def test_every_event_round_trips(kind: str, event: msgspec.Struct) -> None:
    data = codec.encode(event)
    assert json.loads(data)["v"] == schemas.SCHEMA_VERSION
    assert codec.decode_subject(_subject(kind, event), data) == event


def test_every_subject_kind_has_a_sample() -> None:
    assert {k for k, _ in SAMPLES} == set(codec.DECODERS)
    tags = {codec.tag_of(e) for k, e in SAMPLES if k == "event"}
    assert tags == set(subjects.EVENT_KINDS)


@pytest.mark.parametrize(
    ("subject", "body", "why"),
    [
        (f"call.{CID}.event.started", b"{not json", "malformed JSON"),
        (
            f"call.{CID}.event.started",
            b'{"kind":"exploded","v":1,"call_id":"%s","ts":1}' % CID.encode(),
            "exploded",
        ),
        (
            f"call.{CID}.event.dtmf",
            b'{"kind":"dtmf","v":1,"call_id":"%s","ts":1}' % CID.encode(),
            "digit",
        ),
        (
            f"call.{CID}.event.dtmf",
            b'{"kind":"started","v":1,"call_id":"%s","ts":1}' % CID.encode(),
            "does not match",
        ),
        (
            f"call.{CID}.say",
            b'{"type":"say","v":1,"call_id":"%s","ts":"yesterday","utterance_id":"u"}'
            % CID.encode(),
            "ts",
        ),
        (
            f"call.{CID}.control",
            b'{"action":"flush","v":1,"call_id":"00000000-0000-4000-8000-000000000000","ts":1}',
            "does not match",
        ),
        (f"call.{CID}.nonsense", b"{}", "unknown call subject"),
        ("call.not-a-uuid.say", b"{}", "UUID"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(subject: str, body: bytes, why: str) -> None:
    with pytest.raises(codec.BadMessage, match=why):
        codec.decode_subject(subject, body)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    body = json.loads(codec.encode(SAMPLES[0][1]))
    body["added_in_v2"] = {"anything": True}
    assert (
        codec.decode_subject(_subject("event", SAMPLES[0][1]), json.dumps(body).encode())
        == SAMPLES[0][1]
    )


def test_subjects_parse_back() -> None:
    assert subjects.parse(subjects.event(CID, "dtmf")) == subjects.Subject(CID, "event", "dtmf")
    for kind in ("audio.in", "audio.out", "transcript", "decision", "say", "playback", "control"):
        builder = getattr(subjects, kind.replace(".", "_"))
        assert subjects.parse(builder(CID)) == subjects.Subject(CID, kind)
    with pytest.raises(subjects.BadSubject):
        subjects.event(CID, "exploded")
    with pytest.raises(subjects.BadSubject):
        subjects.say("0B3F2C1E-1111-4222-8333-444455556666")  # upper case is not our form


def test_call_id_from_audiosocket_bytes() -> None:
    raw = bytes.fromhex(CID.replace("-", ""))
    assert subjects.call_id_from_bytes(raw) == CID


def test_audio_headers_round_trip_and_reject_bad_bodies() -> None:
    meta = parse_in(in_headers(7, T, 0.14), b"\x01\x00" * 160)
    assert (meta.seq, meta.capture_ts, meta.audio_t) == (7, T, 0.14)
    out = parse_out(
        out_headers("u1", 2, True, interruptible=False, epoch=4), bytes(FRAME_BYTES * 3)
    )
    assert (out.utterance_id, out.seq, out.last, out.interruptible) == ("u1", 2, True, False)
    assert out.epoch == 4
    assert parse_out({"Voicebot-Utterance": "u1", "Voicebot-Seq": "0"}, b"").epoch == 0
    with pytest.raises(BadAudio):
        parse_out(out_headers("u1", 2, False), bytes(FRAME_BYTES + 2))
    with pytest.raises(BadAudio):
        parse_in({}, b"\x00\x00")
    with pytest.raises(BadAudio):
        parse_in(in_headers(1, T, 0.0), b"\x00")


def test_edge_alive_round_trips_and_rejects_garbage() -> None:
    alive = schemas.EdgeAlive(edge="host-1", ts=T, calls=(CID,))
    assert codec.decode_edge_alive(codec.encode(alive)) == alive
    with pytest.raises(codec.BadMessage, match="edge"):
        codec.decode_edge_alive(b'{"edge": 3}')


FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"


@pytest.mark.parametrize(
    "path", sorted(FIXTURES.glob("v*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_stored_fixtures_of_earlier_versions_still_decode(path: Path) -> None:
    stored = json.loads(path.read_text())
    event = codec.decode_subject(stored["subject"], json.dumps(stored["body"]).encode())
    assert event.call_id == stored["body"]["call_id"]
