"""The brain's trust rule: which transcripts are sure enough to act on (brain.worker.trusted)."""

from __future__ import annotations

import pytest

from brain.config import BrainConfig
from brain.worker import trusted
from events import schemas

CONFIG = BrainConfig()  # min_avg_logprob -1.5, min_category_logprob -2.5


def final(text: str, avg_logprob: float, *, chosen: bool = False) -> schemas.Final:
    provider = schemas.EXPECTED_ANSWER if chosen else "whisper"
    return schemas.Final(
        call_id="c", ts=0.0, text=text, avg_logprob=avg_logprob, no_speech_prob=0.1,
        provider=provider,
    )  # fmt: skip


@pytest.mark.parametrize("chosen", [True, False])
def test_a_category_named_alone_is_trusted_down_to_the_category_floor(chosen: bool) -> None:
    assert trusted(final("Mon portable.", -1.8, chosen=chosen), "category", CONFIG)
    assert trusted(final("Internet.", -2.4, chosen=chosen), "category", CONFIG)
    assert not trusted(final("Internet.", -2.6, chosen=chosen), "category", CONFIG)


def test_other_lines_keep_the_general_floor() -> None:
    # Not a category: "L'hôpital." for "Le wifi.".
    assert not trusted(final("L'hôpital.", -1.6), "category", CONFIG)
    # A yes or a no, even chosen: a wrong "oui" ends the call as solved.
    assert not trusted(final("Oui.", -1.6, chosen=True), "yes_no", CONFIG)
    assert not trusted(final("Oui.", -1.6), "yes_no", CONFIG)
    # "Internet." heard where the question was not the category.
    assert not trusted(final("Internet.", -1.6), "problem", CONFIG)
    assert trusted(final("Internet.", -1.4), "problem", CONFIG)
