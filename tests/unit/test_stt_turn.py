"""Turn-taking (pure): speculation at a short pause, commit on a finished answer or a long
silence, discard when the caller goes on; the answers' reading (a whole phone number, when to
decode one again); the expectation follower."""

from __future__ import annotations

import numpy as np
import pytest

from events import schemas
from stt_worker import answers
from stt_worker.follow import ExpectationTracker
from stt_worker.providers.base import SttContext
from stt_worker.turn import Commit, Discard, Onset, Speculate, TurnConfig, TurnTaker

WINDOW = 256  # 32 ms at 8 kHz
W = WINDOW / 8000


def scripted(probabilities: list[float]) -> TurnTaker:
    """A turn-taker whose detector returns the scripted probability of each window."""
    it = iter(probabilities)
    return TurnTaker(lambda _: next(it), WINDOW, TurnConfig(pause_ms=256, end_ms=800))


def windows(n: int) -> bytes:
    return bytes(WINDOW * 2 * n)


def speech(n: int) -> list[float]:
    return [0.9] * n


def silence(n: int) -> list[float]:
    return [0.05] * n


def test_a_finished_answer_ends_the_turn_at_the_short_pause() -> None:
    turns = scripted(silence(5) + speech(10) + silence(40))
    out = turns.feed(windows(5 + 10 + 8))  # 8 windows: the 256 ms pause
    assert [type(e) for e in out] == [Onset, Speculate]
    onset, spec = out
    assert isinstance(onset, Onset) and onset.at == pytest.approx(5 * W)
    assert isinstance(spec, Speculate) and spec.end == pytest.approx(15 * W)
    # the pre-roll (200 ms, but only 5 windows came before), speech, and the pause so far
    assert len(spec.pcm) == (5 + 10 + 8) * WINDOW * 2
    assert turns.heard(spec.id, complete=True) == [Commit(spec.id)]
    assert turns.feed(windows(30)) == []  # nothing left open


def test_an_unfinished_line_waits_for_the_long_silence() -> None:
    turns = scripted(speech(10) + silence(40))
    [_, spec] = turns.feed(windows(10 + 8))
    assert isinstance(spec, Speculate)
    assert turns.heard(spec.id, complete=False) == []
    # 800 ms = 25 windows of silence in all
    assert turns.feed(windows(16)) == []
    assert turns.feed(windows(1)) == [Commit(spec.id)]


def test_speech_after_a_pause_discards_the_speculation_and_keeps_one_turn() -> None:
    turns = scripted(speech(10) + silence(12) + speech(10) + silence(40))
    out = turns.feed(windows(10 + 12))
    spec = out[-1]
    assert isinstance(spec, Speculate)
    assert turns.feed(windows(1)) == [Discard(spec.id)]
    assert turns.heard(spec.id, complete=True) == []  # too late: the caller went on
    later = turns.feed(windows(9 + 8))
    [again] = [e for e in later if isinstance(e, Speculate)]
    assert again.start == pytest.approx(0.0) and again.end == pytest.approx(32 * W)
    assert turns.heard(again.id, complete=True) == [Commit(again.id)]


def test_clicks_are_not_turns_and_flush_commits_an_open_one() -> None:
    turns = scripted(silence(3) + speech(2) + silence(20) + speech(6))
    assert turns.feed(windows(25)) == []  # 64 ms of "speech" never reaches min_speech
    out = turns.feed(windows(6)) + turns.flush()
    assert [type(e) for e in out] == [Onset, Speculate, Commit]


def test_hysteresis_holds_speech_through_a_dip() -> None:
    # 0.47 is between neg_threshold (0.45) and threshold (0.5): the previous decision holds.
    turns = scripted(speech(5) + [0.47] * 10 + silence(30))
    out = turns.feed(windows(15 + 8))
    [spec] = [e for e in out if isinstance(e, Speculate)]
    assert spec.end == pytest.approx(15 * W)


def test_the_length_cap_cuts_a_monologue() -> None:
    turns = TurnTaker(lambda _: 0.9, WINDOW, TurnConfig(max_utterance_ms=1000))
    out = turns.feed(windows(70))
    assert sum(isinstance(e, Commit) and e.cut for e in out) == 2


@pytest.mark.parametrize(
    ("text", "expecting", "complete"),
    [
        ("Oui.", "yes_no", True),
        ("Non, toujours pas.", "yes_no", True),
        ("Hum.", "yes_no", False),
        ("Euh", "category", False),
        ("C'est internet.", "category", True),
        ("C'est pour", "category", False),
        ("Bonjour, j'ai un problème.", "problem", False),
        ("Bonjour, j'ai un problème avec ma box internet.", "problem", True),
        ("Pierre Dupont.", "identity", False),
        ("Pierre Dupont, 06 12 34", "identity", False),
        ("Pierre Dupont, 06 12 34 56 78.", "identity", True),
        ("Mon numéro est le", "identity", False),
        ("D'accord, je vais essayer.", "ack", True),
        ("Je voudrais parler à un conseiller.", "category", True),
        ("06 12 34", None, False),
        ("Merci, au revoir.", None, True),
    ],
)
def test_turn_complete_reads_the_text_against_the_question(
    text: str, expecting: str | None, complete: bool
) -> None:
    assert answers.turn_complete(text, expecting) is complete


def test_meanings_tell_answers_from_lookalikes() -> None:
    assert answers.meanings("Ça ne marche pas.") == {"non"}
    assert answers.meanings("Oui, ça marche !") == {"oui"}
    assert answers.meanings("C'est pas très malade.") == set()  # "pas" alone is no answer
    assert answers.meanings("La box internet") == {"internet"}
    assert answers.is_filler("Hum.") and not answers.is_filler("Hum, oui.")


@pytest.mark.parametrize("expecting", sorted(answers.CHOICES))
def test_every_expected_phrasing_means_its_answer_to_the_recogniser_and_the_brain(
    expecting: str,
) -> None:
    """A phrasing the recogniser may choose is read back as the answer it stands for, and
    the brain's rules take it so: a "Pas du tout." chosen must be a no all the way."""
    from brain.nlu import understand

    intent = {"oui": "affirm", "non": "deny", "internet": "internet", "mobile": "mobile"}
    for meaning, phrasings in answers.CHOICES[expecting].items():
        for text in phrasings:
            found = answers.meanings(text)  # "Oui, merci." is a thank-you as well
            assert found & set(answers.CHOICES[expecting]) == {meaning}, text
            assert understand(text, expecting).intent == intent[meaning], text


PROMPT = "Mon numéro est le 07 45 29 81 03."


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        ("06 12 34 56 78.", True),
        ("Pierre Dupont, 06-12-34-56-78", True),
        ("06 12 34 56 7", False),  # nine digits
        ("1, 2, 3, 4, 5, 6, 7, 8, 9, 0.", False),  # counting, not a French number
        ("Mon numéro est le 07 45 29 81 03.", False),  # the prompt's example, repeated
        ("06 12 45 29 81 77", False),  # a long run of it
        ("07 45 12 34 56", True),  # a caller's number may share a few digits with it
    ],
)
def test_a_whole_number_is_ten_digits_from_0_and_not_the_prompts(text: str, whole: bool) -> None:
    assert answers.is_phone_number(text, PROMPT) is whole


@pytest.mark.parametrize(
    ("free", "expecting", "prefix"),
    [
        ("06 12 34 56 68 8", "phone", ""),
        ("Viro 1 45 67 99 12.", "phone", ""),  # asked for the number: it comes first
        ("Je voudrais un conseiller.", "phone", ""),  # decoded again, kept only if whole
        ("Pierre Dupont, 06 12 34 56 8.", "identity", "Pierre Dupont,"),
        ("1, 2, 3, 4", "identity", ""),
        ("Pierre Dupont.", "identity", None),  # a name alone: no number to decode
        ("06 12 34 56 78.", "phone", None),  # already whole
        ("Mon numéro est le 07 45 29 81 03.", "phone", ""),  # the prompt's, not the caller's
        ("Non.", "yes_no", None),
        ("12 34", None, None),
    ],
)
def test_a_number_is_decoded_again_after_the_words_before_it(
    free: str, expecting: str | None, prefix: str | None
) -> None:
    assert answers.number_prefix(free, expecting, PROMPT) == prefix


def decision(expecting: str | None, epoch: int = 0) -> schemas.Decision:
    return schemas.Decision(
        call_id="c",
        ts=0.0,
        epoch=epoch,
        turn=1,
        trigger="transcript",
        trigger_seq=1,
        state_from="A",
        state_to="B",
        expecting=expecting,
    )


def test_the_follower_tracks_the_newest_owners_expectation() -> None:
    context = SttContext()
    changes: list[str | None] = []
    context.on_change.append(lambda c: changes.append(c.expecting))
    tracker = ExpectationTracker(context)
    tracker.apply(decision("problem", epoch=1))
    tracker.apply(decision("category", epoch=2))
    tracker.apply(decision("yes_no", epoch=1))  # a stale brain instance
    assert context.expecting == "category"
    tracker.apply(decision(None, epoch=2))
    assert context.expecting is None
    assert changes == ["problem", "category", None]


def test_windows_need_not_match_the_chunks() -> None:
    probabilities = speech(10) + silence(30)
    a, b = scripted(list(probabilities)), scripted(list(probabilities))
    pcm = bytes(np.zeros(WINDOW * 40, "<i2").tobytes())
    whole = a.feed(pcm)
    pieces = [e for i in range(0, len(pcm), 320) for e in b.feed(pcm[i : i + 320])]
    assert [type(e) for e in whole] == [type(e) for e in pieces]


@pytest.mark.parametrize(
    ("text", "counting"),
    [
        ("1, 2, 3, 4, 7, 8", True),  # "Euh… oui, oui, ça marche." under pink noise
        ("2 3 4 5 6 5 6 6 8", True),
        ("1, 2, 3, 4, 5, 4 et 3.", True),
        ("0, 6, 1, 2, 3, 4", False),  # a number dictated digit by digit
        ("06 12 34 56 78", False),
        ("1, 2, 3", True),  # "Euh… internet."
        ("1, 2", False),
        ("Mon numéro 1 2 3 4", False),  # words: not the decoder counting on its own
    ],
)
def test_whisper_counting_on_its_own_is_told_from_a_number(text: str, counting: bool) -> None:
    assert answers.is_counting(text) is counting
