"""The call console's pure parts: who may come in and what they see, the live board, a call's
page model from recorded calls, the audio rendering, the search filters."""

from __future__ import annotations

import base64
import datetime
import io
import random
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archiver.summary import Stored
from console import callview, render
from console.auth import Access, mask_number, parse_users, redact
from console.board import LINGER_S, STALE_S, LiveBoard
from console.config import ConsoleConfig
from console.store import BadQuery, Search
from events import schemas
from events.env import ConfigError
from voicebot import recording

CALLS = Path(__file__).resolve().parents[1] / "calls"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- who comes in ---------------------------------------------------------------------------


def test_users_and_token_let_in_whom_they_name_with_their_role() -> None:
    access = Access(token="t0k", users=parse_users("ana:pw1:supervisor, bob:pw2"))
    ana = access.check(basic("ana", "pw1"))
    assert ana is not None and ana.role == "supervisor" and ana.sees_numbers
    bob = access.check(basic("bob", "pw2"))
    assert bob is not None and bob.role == "agent" and not bob.sees_numbers
    for refused in (
        None,
        "",
        basic("ana", "pw2"),  # another user's password
        basic("eve", "pw1"),
        basic("ana", ""),
        "Bearer nope",
        "Digest t0k",
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ):
        assert access.check(refused) is None, refused
    token = access.check("Bearer t0k")
    assert token is not None and token.role == "agent"
    browser = access.check(basic("whoever", "t0k"))  # a browser's prompt: the token as password
    assert browser is not None and not browser.sees_numbers
    assert not access.open and Access().open


@pytest.mark.parametrize(
    ("users", "complaint"),
    [
        ("ana", "name:password"),
        ("ana:", "name:password"),
        ("ana:pw:boss", "role"),
        ("a b:pw", "user name"),
        ("ana:pw,ana:pw2", "twice"),
        ("ana:secret-pw:x:y", "name:password"),
    ],
)
def test_a_bad_user_list_is_refused_naming_the_variable_never_the_password(
    users: str, complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint) as e:
        parse_users(users)
    assert "CONSOLE_USERS" in str(e.value) and "secret" not in str(e.value)
    assert "pw2" not in str(e.value)


def test_with_no_credentials_the_console_binds_to_loopback_whatever_the_host_says() -> None:
    cfg = ConsoleConfig.from_env({"CONSOLE_HOST": "0.0.0.0"})
    assert cfg.host == "127.0.0.1" and cfg.host_forced and cfg.access.open
    assert "localhost only" in cfg.describe()
    guarded = ConsoleConfig.from_env({"CONSOLE_HOST": "0.0.0.0", "CONSOLE_TOKEN": "s3cret"})
    assert guarded.host == "0.0.0.0" and not guarded.host_forced
    assert "s3cret" not in repr(guarded) and "s3cret" not in guarded.describe()
    with pytest.raises(ConfigError, match="CONSOLE_HOST"):
        ConsoleConfig.from_env({"CONSOLE_HOST": "my-host"})
    with pytest.raises(ConfigError, match="CONSOLE_PORT"):
        ConsoleConfig.from_env({"CONSOLE_PORT": "70000"})


def test_numbers_are_masked_in_any_text_and_identifiers_are_left_alone() -> None:
    assert mask_number("0612345678") == "06••••••78"
    assert mask_number("+33 6 12 34 56 78") == "+33•••••••78"
    assert mask_number(None) is None and mask_number("12") == "••"
    payload = {
        "call_id": "12345678-1234-4234-8234-123456789012",
        "caller": "0612345678",
        "slots": {"phone": "+33612345678", "name": "Pierre Dupont"},
        "lines": [
            {"text": "Pierre Dupont, 06 12 34 56 78.", "utterance_id": "u12345678"},
            {"text": "Votre numéro est le 06.12.34.56.78 ?"},
            {"text": "Ticket numéro 100001, le 2026-05-01."},
        ],
        "turn": 12345678901,  # numbers are not text: never changed
    }
    out = redact(payload)
    text = repr(out)
    assert "12 34 56" not in text and "12.34.56" not in text and "612345678" not in text
    assert out["call_id"] == payload["call_id"] and out["lines"][0]["utterance_id"] == "u12345678"
    assert out["caller"] == "06••••••78" and out["slots"]["name"] == "Pierre Dupont"
    assert out["lines"][2]["text"] == "Ticket numéro 100001, le 2026-05-01."
    assert out["turn"] == 12345678901


# --- the live board -------------------------------------------------------------------------


def corpus(name: str) -> list[tuple[int, Any]]:
    rec = recording.read(CALLS / f"{name}.jsonl.gz")
    return [(m.seq, m.event()) for m in rec.calls()]


def test_the_board_is_the_same_whatever_the_order_events_come_in() -> None:
    events = [(s, e) for s, e in corpus("sample") if not isinstance(e, schemas.Ended)]
    views = []
    for seed in range(5):
        board = LiveBoard()
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        for seq, event in shuffled:
            board.apply(seq, event, now=0.0)
        views.append(board.snapshot())
    assert all(v == views[0] for v in views)
    (call,) = views[0]
    assert call["state"] == "CLOSED" and call["ended_ts"] is None
    assert call["last_transcript"]["text"] == "Oui, ça marche !"
    assert call["last_decision"]["state_to"] == "CLOSED"
    assert call["last_bot"]["text"] == "Merci pour votre appel. Au revoir !"


def test_a_call_met_mid_way_is_completed_from_its_history_then_leaves() -> None:
    events = corpus("sample")
    cid = events[0][1].call_id
    board = LiveBoard()
    late = events[20:]
    board.apply(*late[0], now=1.0)  # the console started mid-call
    assert board.take_need_history() == [cid]
    assert board.snapshot()[0]["started_ts"] is None
    board.history_loaded(cid, events[:25], now=1.5)  # overlaps what the tail delivered
    for seq, event in late[1:]:
        board.apply(seq, event, now=2.0)
    (call,) = board.snapshot()
    assert call["started_ts"] == events[0][1].ts and call["ended_ts"] is not None
    changed, gone = board.take_changes()
    assert [c["call_id"] for c in changed] == [cid] and gone == []
    board.prune(now=2.0 + LINGER_S - 1)
    assert board.calls, "an ended call stays a moment, marked ended"
    board.prune(now=2.0 + LINGER_S + 1)
    assert not board.calls and board.take_changes() == ([], [cid])
    board.apply(*events[-1], now=30.0)  # a late redelivery does not bring it back
    assert not board.calls


def test_edges_name_calls_in_progress_and_a_call_no_edge_names_goes() -> None:
    board = LiveBoard()
    cid = "9a119890-0000-4000-8000-000000000001"
    board.edge_alive(schemas.EdgeAlive(edge="e1", ts=0.0, calls=(cid,)), now=0.0)
    assert board.take_need_history() == [cid]
    board.edge_alive(schemas.EdgeAlive(edge="e1", ts=5.0, calls=(cid,)), now=STALE_S + 5)
    board.prune(now=STALE_S + 5)
    assert cid in board.calls, "still named by its edge"
    board.prune(now=2 * STALE_S + 6)
    assert cid not in board.calls, "its edge stopped naming it and it said nothing"


# --- a call's page --------------------------------------------------------------------------


def stored(name: str) -> list[Stored]:
    return [Stored(seq, event) for seq, event in corpus(name)]


def test_a_call_page_lays_what_was_said_and_decided_on_the_calls_clock() -> None:
    history = stored("sample")
    model = callview.build(history[0].event.call_id, history, now=0.0)
    assert not model["live"] and model["outcome"] == "solved"
    assert model["end_outcome"] == "hangup" and model["figures"]["turns"] == 5
    caller = [x for x in model["lines"] if x["who"] == "caller"]
    bot = [x for x in model["lines"] if x["who"] == "bot"]
    assert caller[0]["text"] == "Bonjour, j'ai un problème avec ma connexion."
    assert len(caller) == 5 and len(bot) == 6
    for line in caller + bot:
        assert 0 <= line["start"] < line["end"] <= model["duration_s"] + 0.1, line
    # Bot lines follow each other (the edge plays one at a time) and answer the caller's.
    starts = [x["start"] for x in bot]
    assert starts == sorted(starts)
    changes = [
        (d["state_from"], d["state_to"])
        for d in model["decisions"]
        if d["state_from"] != d["state_to"]
    ]
    assert changes[:2] == [("INIT", "WELCOME"), ("WELCOME", "IDENTIFICATION")]
    turns = [d for d in model["decisions"] if d["latency"]]
    assert len(turns) == 5
    for d in turns:
        lat = d["latency"]
        assert lat["transcript_ms"] > 0 and lat["say_ms"] >= lat["transcript_ms"]
        assert lat["first_frame_ms"] >= lat["say_ms"], "the reply is heard after it is asked for"


def test_a_call_page_marks_dtmf_barge_ins_gaps_and_the_edges_phrases() -> None:
    dtmf = stored("dtmf_fallback")
    marks = callview.build(dtmf[0].event.call_id, dtmf, now=0.0)["marks"]
    assert [m["text"] for m in marks if m["kind"] == "dtmf"] == ["DTMF 1", "DTMF 1", "DTMF 1"]
    cut = stored("bargein_welcome")
    lines = callview.build(cut[0].event.call_id, cut, now=0.0)["lines"]
    assert lines and any(x["interrupted"] for x in lines if x["who"] == "bot")
    slow = stored("provider_timeout")
    model = callview.build(slow[0].event.call_id, slow, now=0.0)
    kinds = {m["kind"] for m in model["marks"]}
    assert {"error", "gap"} <= kinds
    # The edge's own hold phrase, with no say: a line of its own, flagged.
    cid, t0 = slow[0].event.call_id, slow[0].event.ts
    edge = [
        Stored(
            10_001,
            schemas.PlaybackStarted(
                call_id=cid, ts=t0 + 5, utterance_id="edge-hold-1", origin="edge"
            ),
        ),
        Stored(
            10_002,
            schemas.PlaybackFinished(
                call_id=cid, ts=t0 + 6, utterance_id="edge-hold-1", frames=50, origin="edge"
            ),
        ),
    ]
    held = callview.build(cid, slow + edge, now=0.0)
    (hold,) = [x for x in held["lines"] if x["who"] == "edge"]
    assert hold["text"] == "Un instant, s'il vous plaît." and hold["start"] == pytest.approx(5.0)
    assert hold["end"] == pytest.approx(6.0)
    assert held["figures"]["hold_prompts"] == model["figures"]["hold_prompts"] + 1


def test_a_call_in_progress_lasts_until_now() -> None:
    history = [s for s in stored("sample") if not isinstance(s.event, schemas.Ended)]
    t0 = history[0].event.ts
    model = callview.build(history[0].event.call_id, history, now=t0 + 42.0)
    assert model["live"] and model["duration_s"] == pytest.approx(42.0)


# --- audio ----------------------------------------------------------------------------------


def test_peaks_and_wav_keep_each_side_where_it_spoke() -> None:
    left = np.zeros(8000 * 2, np.int16)
    right = np.zeros(8000 * 2, np.int16)
    left[:8000] = 16000  # the caller's first second
    right[8000:12000] = -32768  # the bot, half a second later on
    peaks = render.peaks(left, right)
    assert peaks["duration_s"] == 2.0 and len(peaks["caller"]) == 100 == len(peaks["bot"])
    assert set(peaks["caller"][:50]) == {70} and set(peaks["caller"][50:]) == {0}
    assert set(peaks["bot"][50:75]) == {100} and set(peaks["bot"][:50] + peaks["bot"][75:]) == {0}
    with wave.open(io.BytesIO(render.wav(left, right))) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, 16000)
        both = np.frombuffer(w.readframes(16000), "<i2").reshape(-1, 2)
    assert (both[:, 0] == left).all() and (both[:, 1] == right).all()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-", (0, 1000)),
        ("bytes=10-19", (10, 20)),
        ("bytes=990-5000", (990, 1000)),
        ("bytes=-100", (900, 1000)),
        ("items=0-1", None),
    ],
)
def test_byte_ranges(header: str | None, expected: tuple[int, int] | None) -> None:
    assert render.byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=20-10", "bytes=-0", "bytes=x-"])
def test_byte_ranges_that_cannot_be_served(header: str) -> None:
    with pytest.raises(ValueError):
        render.byte_range(header, 1000)


# --- the search -----------------------------------------------------------------------------


def test_search_filters_become_parameters_never_sql() -> None:
    query = Search.from_query(
        {
            "from": "2026-05-01",
            "to": "2026-05-02",
            "outcome": "transfer",
            "dialog_outcome": "ticket",
            "ticket": "100001",
            "caller": "+33 6 12 34 56 78",
        }
    )
    sql, args = query.sql()
    assert "'" + "612345678" not in sql and "100001" not in sql
    assert args[0] == datetime.datetime(2026, 5, 1, tzinfo=datetime.UTC)
    assert args[1] == datetime.datetime(2026, 5, 3, tzinfo=datetime.UTC)  # the whole 2nd
    assert args[2:6] == ["transfer", "ticket", "100001", "612345678"]
    assert "split_part(end_outcome" in sql and args[-1] == 50
    exact, exact_args = Search.from_query({"outcome": "transfer:technicians"}).sql()
    assert "end_outcome = $1" in exact and exact_args[0] == "transfer:technicians"
    part, part_args = Search.from_query({"caller": "56 78"}).sql()
    assert "LIKE" in part and part_args[0] == "%5678%"
    assert Search.from_query({"limit": "100000"}).limit == 200


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ({"from": "yesterday"}, "from"),
        ({"outcome": "x; DROP TABLE calls"}, "outcome"),
        ({"ticket": "1' OR '1"}, "ticket"),
        ({"caller": "Pierre"}, "caller"),
        ({"limit": "many"}, "limit"),
    ],
)
def test_bad_search_filters_are_refused_saying_which(query: dict[str, str], complaint: str) -> None:
    with pytest.raises(BadQuery, match=complaint):
        Search.from_query(query)
