"""The quality harness's pure parts: number words, WER, timings, noise, the callers' policy,
and one call's record assembled from a caller result and the bot's events."""

from __future__ import annotations

import random

import numpy as np
import pytest

from events import schemas
from quality import metrics, numbers_fr, record, synth
from quality.observer import CallView, Question
from quality.personas import PERSONAS, by_key
from quality.policy import AGAIN, Memory, ScriptedCaller, choose, classify, steps_of
from voicebot.caller import CallResult, Line, turn_timings

# --- numbers and WER -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (6, "six"),
        (17, "dix-sept"),
        (21, "vingt et un"),
        (71, "soixante et onze"),
        (78, "soixante-dix-huit"),
        (80, "quatre-vingts"),
        (98, "quatre-vingt-dix-huit"),
    ],
)
def test_numbers_are_said_the_french_way(n: int, words: str) -> None:
    assert numbers_fr.say_number(n) == words


def test_a_number_said_in_pairs_or_digits() -> None:
    assert numbers_fr.say_pairs("0612345678") == (
        "zéro six, douze, trente-quatre, cinquante-six, soixante-dix-huit"
    )
    assert numbers_fr.say_digits("0698") == "zéro, six, neuf, huit"


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("zéro six, douze, trente-quatre, cinquante-six, soixante-dix-huit", "0612345678"),
        ("06 12 34 56 78", "0612345678"),
        ("zéro, six, neuf, huit", "0698"),
        ("quatre-vingt-dix-huit, soixante et onze", "9871"),
        ("quatre, vingt-deux", "422"),  # the comma ends a number: not 82
        ("quatre cent septante et un", "471"),  # Belgian
        ("dix-sept", "17"),
    ],
)
def test_words_and_digits_read_the_same(text: str, digits: str) -> None:
    assert "".join(numbers_fr.numbers_to_digits(numbers_fr.tokens(text))) == digits


def test_wer_ignores_writing_differences_not_errors() -> None:
    said = "Euh… Pierre Dupont, zéro six, douze, trente-quatre, cinquante-six, soixante-dix-huit."
    assert metrics.word_errors(said, "Pierre Dupont, 06 12 34 56 78.").edits == 0
    assert metrics.word_errors("Mon Wi-Fi, okay.", "mon wifi ok").edits == 0
    errs = metrics.word_errors(said, "Père du pont, 0 si nous est 34 56 78.")
    assert errs.ref_words == 12 and errs.edits == 6  # 5 substitutions, "pont" inserted


def test_edit_distance_counts_substitutions_insertions_and_deletions() -> None:
    assert metrics.edit_distance(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert metrics.edit_distance([], ["a"]) == 1
    assert metrics.edit_distance(["a"], []) == 1


def test_percentiles_interpolate_and_handle_no_data() -> None:
    assert metrics.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert metrics.percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    assert metrics.percentile([], 50) is None


def test_finals_belong_to_the_line_whose_audio_they_cover() -> None:
    h = metrics.Heard
    lines = [(10.0, 12.0), (20.0, 22.0), (30.0, 31.0)]
    finals = [
        h(6.0, 4.0, 5.0, "bruit"),  # noise before any line
        h(13.0, 9.9, 12.0, "a"),
        h(21.0, 10.5, 11.0, "b"),  # published late, during the next line: still the first's
        h(25.0, 20.0, 21.0, " "),
        h(40.0, 0.0, 0.0, "c"),  # no audio times: the latest line started before it
    ]
    assert metrics.heard_per_line(lines, finals) == (["a b", "", "c"], 1)


def test_repeat_prompts_and_runs_leave_the_hold_phrase_out() -> None:
    keys = ["welcome", "repeat", "ask_category", "hold", "ask_category", "ask_category", "hold"]
    assert metrics.repeat_prompts(keys) == 3  # repeat, then the same question twice again
    assert metrics.longest_run(keys) == (3, "ask_category")
    assert metrics.longest_run(["a", "b", "a"]) == (1, "a")


def test_a_no_input_ending_while_the_caller_spoke() -> None:
    d = metrics.DecisionMark
    decisions = [
        d(100.0, "transcript", ("say:ask_category_dtmf", "timer:no_input:8")),
        d(110.0, "timer:no_input", ("say:no_input_last",)),
        d(120.0, "timer:no_input", ("say:goodbye_no_input",)),
    ]
    # The first silence of the final countdown began at 110 - 8 = 102.
    assert metrics.no_input_while_talking("no_input", decisions, [101.0, 104.0])
    assert not metrics.no_input_while_talking("no_input", decisions, [99.0, 101.5])
    assert not metrics.no_input_while_talking("solved", decisions, [104.0])


def test_judging_an_end() -> None:
    e = metrics.Expect(outcomes=frozenset({"solved"}), category="internet", customer="")
    assert metrics.judge(e, "solved", "internet", None) == []
    assert metrics.judge(e, "solved", "internet", "Pierre Dupont") == [
        "customer Pierre Dupont (expected unidentified)"
    ]
    assert len(metrics.judge(e, "abandoned", "mobile", None)) == 2
    loose = metrics.Expect(outcomes=frozenset({"transfer", "ticket"}))
    assert metrics.judge(loose, "ticket", None, "Marie Martin") == []


# --- the caller's timings ---------------------------------------------------------------


def test_turn_timings_from_the_callers_side() -> None:
    lines = [Line("say", "a", "problem", 2.0, 3.0), Line("say", "b", "identity", 8.0, 9.0)]
    bot = [[0.5, 1.8], [4.0, 5.0], [5.2, 6.0], [7.0, 7.5], [8.5, 10.5], [12.0, 13.0]]
    t = turn_timings(lines, bot, 14.0, min_gap_s=0.5)
    assert t[0].line is None and t[0].latency_s == pytest.approx(0.5)
    first = t[1]
    assert first.latency_s == pytest.approx(1.0)
    assert first.waits_s == pytest.approx((1.0, 1.0))  # the 0.2 s pause is speech, not a wait
    assert not first.talked_over
    second = t[2]
    assert second.talked_over and second.latency_s is None  # the bot was already speaking
    assert second.waits_s == pytest.approx((1.5,))


def test_a_line_the_bot_never_answered_is_all_wait() -> None:
    t = turn_timings([Line("say", "a", "x", 1.0, 2.0)], [], 12.0)
    assert t[1].latency_s is None and not t[1].answered and t[1].waits_s == (10.0,)


# --- voices and noise --------------------------------------------------------------------


def _tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return 10000 * np.sin(2 * np.pi * hz * t)


def test_the_telephone_band_keeps_speech_and_drops_the_rest() -> None:
    def gain(hz: float) -> float:
        x = _tone(hz)
        return float(np.std(synth.band_limit(x)) / np.std(x))

    assert gain(1000) == pytest.approx(1.0, abs=0.01)
    assert gain(100) < 0.01 and gain(3800) < 0.01


@pytest.mark.parametrize("kind", ["pink", "babble"])
def test_background_noise_sits_at_the_stated_snr_and_is_reproducible(kind: str) -> None:
    a, b = synth.Ambience(kind, 15.0, seed=7), synth.Ambience(kind, 15.0, seed=7)
    x = np.frombuffer(a.pcm, "<i2").astype(np.float64)
    level = 10 * np.log10(np.mean(x**2)) - 20 * np.log10(32768)
    assert level == pytest.approx(synth.SPEECH_DBFS - 15.0, abs=0.2)
    assert a.pcm == b.pcm and a.pcm != synth.Ambience(kind, 15.0, seed=8).pcm
    frames = [a() for _ in range(3)]
    assert all(len(f) == 320 for f in frames) and frames[0] != frames[1]


def test_the_conditions_pair_a_clean_and_a_noisy_call_and_cover_everything() -> None:
    conds = synth.conditions(("v1", "v2"))
    assert len(set(conds)) == 8
    assert {(c.voice, c.rate, c.noise is None) for c in conds} == {
        (v, r, clean) for v in ("v1", "v2") for r in synth.RATES for clean in (True, False)
    }
    for a, b in zip(conds[::2], conds[1::2], strict=True):
        assert a.noise is None and b.noise is not None
        assert a.voice != b.voice and a.rate != b.rate


def test_a_line_is_brought_to_the_speech_level() -> None:
    x = np.concatenate([_tone(500) * 0.1, np.zeros(4000)])
    assert synth.active_level_dbfs(synth.scale_to(x, -22.0)) == pytest.approx(-22.0, abs=0.01)


# --- personas and their policy -----------------------------------------------------------


def _q(
    phrase: str | None = None, text: str | None = None, state: str = "WELCOME", **kw: object
) -> Question:
    return Question(
        utterance_id="u1",
        phrase=phrase,
        text=text,
        state=state,
        expecting=kw.get("expecting"),  # type: ignore[arg-type]
        confirming_phone=bool(kw.get("confirming_phone")),
        finished_at=0.0,
    )


def test_questions_are_named_by_phrase_then_by_dialog_state() -> None:
    assert classify(_q("ask_identity")) == "identity"
    assert classify(_q("repeat", state="DIAGNOSTIC")) == AGAIN
    assert classify(_q("ask_category_dtmf")) == "category_keypad"
    readback = "J'ai noté le 0611223344. Est-ce bien votre numéro ?"
    confirming = _q(text=readback, state="IDENTIFICATION", confirming_phone=True)
    assert classify(confirming) == "confirm_phone"
    assert classify(_q(text="Essayez de redémarrer.", state="SOLUTION")) == "solution"
    # A phrase added later, unknown here: the state (or `expecting`) still says what to answer.
    assert classify(_q("ask_spelling", state="IDENTIFICATION")) == "identity"
    assert classify(_q("new_question", state="VERIFICATION", expecting="ack")) == "solution"


def test_a_read_back_number_is_confirmed_or_corrected() -> None:
    unknown = by_key()["unknown_caller"]
    right = "J'ai noté le 0611223344. Est-ce bien votre numéro ?"
    assert choose(unknown, "confirm_phone", right, Memory())[1] == unknown.yes[0]
    wrong = "J'ai noté le 0611223345. Est-ce bien votre numéro ?"
    answer = choose(unknown, "confirm_phone", wrong, Memory())[1]
    assert answer.startswith("Non, c'est le zéro six, onze")


def test_asked_to_type_their_number_callers_type_it_then_hash() -> None:
    assert classify(_q("ask_phone_dtmf")) == "phone_keypad"
    unknown = by_key()["unknown_caller"]
    assert choose(unknown, "phone_keypad", "", Memory())[1] == "dtmf:0611223344#"
    steps = steps_of("dtmf:0611223344#", "phone_keypad")
    assert [(s.verb, s.arg) for s in steps] == [("dtmf", "0611223344#")]


def test_the_fixes_fail_until_the_one_that_works() -> None:
    p = by_key()["second_fix_works"]
    m = Memory()
    assert choose(p, "solution", "fix 1", m) == ("solution", p.answers["solution"][0])
    assert choose(p, "verification", "", m)[1] == p.no[0]
    assert choose(p, "verification_keypad", "", m)[1] == "dtmf:2"
    choose(p, "solution", "fix 1", m)  # the same fix asked again is not a new one
    assert m.fixes == 1
    assert choose(p, "solution", "fix 2", m)[1] == p.answers["solution"][1]
    assert choose(p, "verification", "", m)[1] == p.yes[0]
    assert choose(p, "verification_keypad", "", m)[1] == "dtmf:1"


def test_a_caller_who_asked_for_a_fix_slower_goes_on_when_it_comes_again() -> None:
    p = by_key()["slower_please"]
    m = Memory()
    assert "lentement" in choose(p, "solution", "fix 1", m)[1]
    assert choose(p, "solution", "fix 1", m)[1] == p.answers["solution"][1]  # said slower


def test_asked_again_the_caller_rephrases_the_same_answer() -> None:
    p = by_key()["vague_category"]
    m = Memory()
    first = choose(p, "category", "", m)
    assert choose(p, AGAIN, "", m) == ("category", p.answers["category"][1])
    assert first[1] == p.answers["category"][0]
    assert choose(p, "category_keypad", "", m)[1] == "dtmf:1"


def test_a_caller_told_to_take_their_time_gives_the_answer_asked_for() -> None:
    """After "prenez votre temps" the question still stands: the number, or whether it works."""
    p = by_key()["needs_time"]
    m = Memory()
    assert "attendez" in choose(p, classify(_q("ask_identity")), "", m)[1]
    kind = classify(_q("take_your_time", state="IDENTIFICATION", expecting="identity"))
    assert choose(p, kind, "", m)[1] == p.answers["identity"][1]
    choose(p, "solution", "fix 1", m)
    kind = classify(_q("take_your_time", state="VERIFICATION", expecting="yes_no"))
    assert choose(p, kind, "", m)[1] == p.yes[0]


def test_answers_become_caller_steps() -> None:
    steps = steps_of("Bon, je rappellerai.|hangup", "solution")
    assert [(s.verb, s.arg, s.tag) for s in steps] == [
        ("say", "Bon, je rappellerai.", "solution"),
        ("hangup", "", "solution"),
    ]
    assert steps_of("dtmf:1", "category_keypad")[0].verb == "dtmf"


def test_there_are_enough_personas_and_each_can_open_the_call() -> None:
    assert len(PERSONAS) >= 25
    assert len({p.key for p in PERSONAS}) == len(PERSONAS)
    for p in PERSONAS:
        assert p.expect.outcomes, p.key
        assert choose(p, "problem", "", Memory())[1], p.key


async def _answer(caller: ScriptedCaller, view: CallView) -> list[str]:
    steps = []
    while (step := await caller.next_step()) is not None:
        steps.append(f"{step.verb}:{step.arg}")
        if step.verb == "hangup":
            break
    return steps


class _OpenLine:
    closed = False


@pytest.mark.timeout(5)
async def test_the_scripted_caller_waits_for_the_question_to_end_then_gives_up_when_due() -> None:
    view = CallView("c")
    caller = ScriptedCaller(by_key()["sample"], view, random.Random(1), max_lines=1)
    caller.caller = _OpenLine()  # type: ignore[assignment]
    ts = 0.0
    view.on_event(schemas.Say(call_id="c", ts=ts, utterance_id="u1", phrase="welcome"))
    view.on_event(
        schemas.Decision(
            call_id="c",
            ts=ts,
            turn=0,
            trigger="started",
            trigger_seq=1,
            state_from="INIT",
            state_to="WELCOME",
            snapshot={"state": "WELCOME", "awaiting": "u1"},
        )
    )
    view.on_event(schemas.PlaybackStarted(call_id="c", ts=ts, utterance_id="u1"))
    assert view.question(None) is None  # still speaking
    view.on_event(schemas.PlaybackFinished(call_id="c", ts=ts, utterance_id="u1"))
    steps = await _answer(caller, view)
    assert steps[0] == "say:Bonjour, j'ai un problème avec ma connexion."
    assert steps[1:] == [
        "say:Bon, laissez tomber, je rappellerai plus tard. Au revoir.",
        "hangup:",
    ]  # one line was all its patience allowed
    assert caller.gave_up


def test_no_answer_between_a_new_say_and_the_decision_that_awaits_it() -> None:
    """The brain publishes a say before the decision naming it as the awaited prompt: in
    between, the previous prompt looks answered-and-done, and must not be answered again."""
    view = CallView("c")
    ts = 0.0

    def decide(awaiting: str) -> schemas.Decision:
        snap = {"state": "SOLUTION", "awaiting": awaiting}
        return schemas.Decision(
            call_id="c", ts=ts, turn=1, trigger="transcript", trigger_seq=1,
            state_from="SOLUTION", state_to="SOLUTION", snapshot=snap,
        )  # fmt: skip

    view.on_event(schemas.Say(call_id="c", ts=ts, utterance_id="u1", text="Redémarrez."))
    view.on_event(decide("u1"))
    view.on_event(schemas.PlaybackStarted(call_id="c", ts=ts, utterance_id="u1"))
    view.on_event(schemas.PlaybackFinished(call_id="c", ts=ts, utterance_id="u1"))
    assert view.question(None) is not None
    view.on_event(schemas.Say(call_id="c", ts=ts, utterance_id="u2", phrase="ask_verification"))
    assert view.question(None) is None  # u2 is on its way
    view.on_event(decide("u2"))
    view.on_event(schemas.PlaybackStarted(call_id="c", ts=ts, utterance_id="u2"))
    assert view.question("u1") is None
    view.on_event(schemas.PlaybackInterrupted(call_id="c", ts=ts, utterance_id="u2"))
    q = view.question("u1")
    assert q is not None and q.phrase == "ask_verification"


# --- one call's record -------------------------------------------------------------------


def test_a_call_record_from_the_callers_result_and_the_bots_events() -> None:
    p = by_key()["sample"]
    cond = synth.Condition("mb-fr1", 135)
    wall = 1000.0
    result = CallResult("c", hung_up_by="bot", duration_s=20.0, started_wall=wall)
    result.lines = [
        Line("say", "Bonjour, j'ai un problème avec ma connexion.", "problem", 3.0, 5.0),
        Line("dtmf", "1", "category_keypad", 9.0, 9.0),
    ]
    result.bot_speech = [[0.2, 2.5], [6.2, 8.0], [10.0, 12.0]]

    def say(u: str, phrase: str, ts: float) -> schemas.Say:
        return schemas.Say(call_id="c", ts=wall + ts, utterance_id=u, phrase=phrase)

    events = [
        say("u1", "welcome", 0.1),
        schemas.Final(
            call_id="c",
            ts=wall + 6.0,
            start=3.0,
            end=5.0,
            text="Bonjour, j'ai un problème avec ma box.",
        ),
        say("u2", "repeat", 6.1),
        say("u3", "goodbye", 9.9),
        schemas.Decision(
            call_id="c",
            ts=wall + 10,
            turn=3,
            trigger="dtmf",
            trigger_seq=5,
            state_from="VERIFICATION",
            state_to="CLOSED",
            snapshot={
                "outcome": "solved",
                "category": "internet",
                "customer_id": 1,
                "customer_name": "Pierre Dupont",
            },
        ),
    ]
    rec = record.build(p, cond, result, events)
    assert rec.success and rec.outcome == "solved" and rec.customer == "Pierre Dupont"
    spoken, keyed = rec.lines
    assert spoken.heard == "Bonjour, j'ai un problème avec ma box."
    assert (spoken.edits, spoken.ref_words) == (1, 8)
    assert spoken.latency_s == pytest.approx(1.2)
    assert keyed.heard is None and keyed.latency_s == pytest.approx(1.0)
    assert rec.welcome_latency_s == pytest.approx(0.2)
    assert rec.dead_air_longest_s == pytest.approx(1.2)
    assert rec.dead_air_total_s == pytest.approx(2.4)
    assert (rec.prompts, rec.repeat_prompts) == (3, 1)
    assert rec.dialog[0].startswith("Bot: Bonjour") and rec.dialog[-1] == "-> solved"


def test_a_foreign_caller_denies_a_wrong_read_back_with_their_own_number() -> None:
    """A Belgian number has an odd number of digits: no French pairs (the harness crashed on
    it and lost a whole run)."""
    p = by_key()["belgian_number"]
    answer = choose(
        p, "confirm_phone", "J'ai noté le 0612345678. Est-ce bien votre numéro ?", Memory()
    )[1]
    assert answer.startswith("Non, c'est le plus trente-deux, quatre cent septante")
