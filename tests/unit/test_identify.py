"""Who the caller is from a misheard name and number: lines as Whisper heard the quality
harness's callers (bench/results/quality.json), against the seed customers."""

from __future__ import annotations

import pytest

from brain.identify import Candidate, heard_name, likeliest, name_likeness, sounds
from brain.nlu.numbers_fr import to_digits

PIERRE = Candidate(1, "Pierre Dupont", "0612345678")
PIERRE_FIXE = Candidate(1, "Pierre Dupont", "0145678912")
MARIE = Candidate(2, "Marie Martin", "0698765432")
JEAN = Candidate(3, "Jean Bernard", "0755443322")
SEED = [PIERRE, PIERRE_FIXE, MARIE, JEAN]


def who(line: str, name: str | None = None) -> Candidate | None:
    return likeliest(name or heard_name(line), to_digits(line), SEED)


def test_names_that_sound_alike_have_alike_keys() -> None:
    assert sounds("Pierre Dupont") == sounds("Pierre du pont")
    assert name_likeness("Pire du bon", "Pierre Dupont") >= 0.8
    assert name_likeness("Marie-Marcins", "Marie Martin") >= 0.8
    assert name_likeness("Marie-Martin", "Pierre Dupont") < 0.3
    assert name_likeness("Hélène Lefèvre", "Helene Lefevre") == 1.0


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("Pire du bon, 0.12 34 56 78.", "Pire du bon"),
        ("Marie-Martin, 0 aussi 88 77 5 4 32", "Marie-Martin"),
        ("Pierre Zubon, mon numéro fixe, celles réroins, 45, 67, 99.", "Pierre Zubon"),
        ("Bonjour, je m'appelle Jean Bernard, 07 55", "Jean Bernard"),
        ("Mon numéro est le 06 2 34 56 78.", None),
        ("06 48 88 67 54 32", None),
    ],
)
def test_the_name_is_what_comes_before_the_number(line: str, name: str | None) -> None:
    assert heard_name(line) == name


@pytest.mark.parametrize(
    ("line", "customer"),
    [
        # "quatre-vingt-dix-huit" heard as "48 8", and a pair doubled: the name decides.
        ("Marie-Martin 06 48 88 67 54 32", MARIE),
        ("Marie-Marcins, 0,4 88 57 58 32.", MARIE),
        ("Narin Martin, 11 8 8 8 7 5 4 3 2", MARIE),
        ("Pire du bon, 0.12 34 56 78.", PIERRE),
        # A digit lost: the number alone is enough.
        ("Mon numéro est le 06 2 34 56 78.", PIERRE),
    ],
)
def test_a_misheard_number_with_its_name_points_to_one_customer(
    line: str, customer: Candidate
) -> None:
    assert who(line) == customer


def test_the_name_said_earlier_counts_for_a_number_said_later() -> None:
    assert who("06 48 88 77 54 32", name=None) is None  # four digits off: not alone
    assert who("06 48 88 77 54 32", name="Marie-Martin") == MARIE
    assert who("06 48 88 67 54", name="Marie-Martin") is None  # six off: not even with it


def test_a_name_alone_never_gives_a_customer_away() -> None:
    assert who("Pierre Dupont.") is None
    assert who("Pierre Dupont, 06 12") is None  # too few digits to say anything


def test_the_wrong_name_does_not_pull_a_far_number() -> None:
    # Four digits from Marie's number, and the name is Pierre's: nobody.
    assert who("06 48 88 77 54 32", name="Pierre Dupont") is None
    # Another customer's name does not override a number a digit away from Pierre's.
    assert who("06 12 34 56 79", name="Marie Martin") == PIERRE


def test_two_customers_as_likely_are_asked_about_not_guessed() -> None:
    twins = [Candidate(7, "Anne Petit", "0611223344"), Candidate(8, "Anne Petit", "0611223355")]
    assert likeliest("Anne Petit", "0611223300", twins) is None
    assert likeliest("Anne Petit", "0611223344", twins) == twins[0]


def test_a_customer_with_two_numbers_is_one_candidate() -> None:
    assert who("Pierre Dupont, 01 45 67 89 1") == PIERRE_FIXE
