"""The dialog extracted from events, and the diff of two dialogs (pure)."""

from __future__ import annotations

from typing import Any

from events import schemas
from voicebot.dialog_diff import Dialog, diff, extract, phrase_text
from voicebot.replay import cues
from voicebot.trace import Tracer

CID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def decision(
    state_from: str,
    state_to: str,
    *,
    trigger: str = "transcript",
    text: str | None = None,
    intent: str | None = None,
    slots: dict[str, str] | None = None,
    actions: tuple[str, ...] = (),
    outcome: str | None = None,
) -> schemas.Decision:
    return schemas.Decision(
        call_id=CID,
        ts=1.0,
        turn=0,
        trigger=trigger,
        trigger_seq=0,
        state_from=state_from,
        state_to=state_to,
        intent=intent,
        slots=slots or {},
        text=text,
        actions=actions,
        snapshot={"state": state_to, "outcome": outcome},
    )


def say(uid: str, phrase: str | None = None, text: str | None = None) -> schemas.Say:
    return schemas.Say(call_id=CID, ts=1.0, utterance_id=uid, phrase=phrase, text=text)


def call(solution: str = "Débranchez la box.", ticket: str = "100001") -> list[Any]:
    return [
        schemas.Started(call_id=CID, ts=0.0),
        decision("INIT", "WELCOME", trigger="started", actions=("say:welcome", "timer:max:600")),
        say("u1", "welcome"),
        decision("WELCOME", "WELCOME", trigger="playback_finished", actions=("timer:no_input:8",)),
        decision(
            "WELCOME",
            "DIAGNOSTIC",
            text="Pierre Dupont, 06 12 34 56 78",
            intent="inform",
            slots={"phone": "0612345678", "name": "Pierre Dupont"},
            actions=("cancel:no_input", "say:ask_category"),
        ),
        say("u2", "ask_category"),
        decision(
            "DIAGNOSTIC",
            "SOLUTION",
            text="Internet",
            intent="internet",
            slots={"category": "internet"},
            actions=(f"say_text:{solution}",),
        ),
        say("u3", text=solution),
        decision(
            "SOLUTION",
            "GOODBYE",
            text="oui",
            intent="affirm",
            actions=(f"say_text:J'ai ouvert le ticket numéro {ticket}.", "outcome:solved"),
            outcome="solved",
        ),
        say("u4", text=f"J'ai ouvert le ticket numéro {ticket}."),
        schemas.HangupCall(call_id=CID, ts=2.0),
        decision(
            "GOODBYE",
            "CLOSED",
            trigger="playback_finished",
            actions=("end:hangup",),
            outcome="solved",
        ),
    ]


def test_extract_keeps_the_dialog_and_drops_bookkeeping() -> None:
    d = extract(call())
    assert d.call_id == CID
    assert d.states == ("WELCOME", "DIAGNOSTIC", "SOLUTION", "GOODBYE", "CLOSED")
    assert d.intents == ("inform", "internet", "affirm")
    assert ("phone", "0612345678") in d.slots
    assert d.phrases[:2] == ("welcome", "ask_category")
    assert d.outcome == "solved" and d.ending == "hangup"
    assert [t.trigger for t in d.turns] == [
        "started",
        "transcript",
        "transcript",
        "transcript",
        "playback_finished",
    ]  # the playback that only armed a timer is not a turn
    assert all("timer" not in a for t in d.turns for a in t.actions)


def test_same_dialog_gives_an_empty_diff_even_with_another_ticket_number() -> None:
    assert diff(extract(call()), extract(call(ticket="100042"))) == []


def test_a_changed_solution_shows_in_the_diff() -> None:
    lines = diff(extract(call()), extract(call(solution="Redémarrez le téléphone.")))
    text = "\n".join(lines)
    assert "phrases differs" in text
    assert "-bot: Débranchez la box." in text
    assert "+bot: Redémarrez le téléphone." in text
    assert "outcome differs" not in text


def test_a_different_outcome_and_path_are_named() -> None:
    other = [
        *call()[:7],
        decision(
            "SOLUTION",
            "TRANSFER",
            text="non",
            intent="deny",
            actions=("say:transfer",),
            outcome="transfer",
        ),
        say("u4", "transfer"),
        schemas.Transfer(call_id=CID, ts=2.0),
    ]
    text = "\n".join(diff(extract(call()), extract(other)))
    assert "state path differs" in text and "TRANSFER" in text
    assert "intents differs" in text
    assert "outcome differs:\n    original: solved\n    replay:   transfer" in text
    assert "ending differs" in text


def test_empty_dialog() -> None:
    assert extract([]) == Dialog("", (), (), (), None, None)


def test_phrase_text_reads_the_cached_phrase() -> None:
    assert phrase_text(say("u1", "welcome")).startswith("Bonjour")
    assert phrase_text(say("u2", text="Bonjour toi")) == "Bonjour toi"


def test_tracer_lines() -> None:
    t = Tracer()
    lines = [t.format(e) for e in call()]
    shown = [line for line in lines if line is not None]
    assert any('Bot [u1]: "Bonjour, bienvenue' in line for line in shown)
    assert any("WELCOME -> DIAGNOSTIC [transcript]  intent=inform" in line for line in shown)
    assert lines[3] is None  # a decision that only armed a timer
    assert shown[-1].split()[2] == "CLOSED"
    started = schemas.PlaybackStarted(call_id=CID, ts=1.25, utterance_id="u4")
    assert "first frame 250 ms after say" in (t.format(started) or "")


def test_brain_mode_cues_wait_for_what_the_original_had_said() -> None:
    events = [(float(i), f"call.{CID}.x", e) for i, e in enumerate(call())]
    finished = schemas.PlaybackFinished(call_id=CID, ts=3.0, utterance_id="u2")
    events.insert(6, (5.5, f"call.{CID}.playback", finished))
    events.append(
        (
            20.0,
            f"call.{CID}.event.ended",
            schemas.Ended(call_id=CID, ts=20.0, reason="bot", outcome="hangup", duration_s=20),
        )
    )
    schedule = cues(events)
    assert [type(c.event).__name__ for c in schedule] == ["Started", "PlaybackFinished", "Ended"]
    assert schedule[1].needs == {"u2"}  # a playback report waits for its own say only
    assert schedule[1].gap_s == 5.5
    assert schedule[2].needs == {"u1", "u2", "u3", "u4"}
    assert schedule[2].after_control


def test_a_pipeline_with_other_timers_is_pointed_out() -> None:
    from voicebot.replay import _policy_notes

    mine = [decision("WELCOME", "WELCOME", actions=("timer:no_input:1",))]
    theirs = [decision("WELCOME", "WELCOME", actions=("timer:no_input:8",))]
    assert _policy_notes(mine, mine) == []
    (note,) = _policy_notes(mine, theirs)
    assert note.startswith("timer no_input is 8 s in this pipeline, 1 s in the recording")
