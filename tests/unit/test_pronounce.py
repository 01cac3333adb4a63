"""French normalisation of the SAV's vocabulary before synthesis."""

from __future__ import annotations

import pytest

from tts_worker.pronounce import normalise, number_fr, pair_fr, phone_fr, sentences

PAIRS = "zéro six, douze, trente-quatre, cinquante-six, soixante-dix-huit"


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zéro"),
        (1, "un"),
        (10, "dix"),
        (16, "seize"),
        (17, "dix-sept"),
        (20, "vingt"),
        (21, "vingt et un"),
        (22, "vingt-deux"),
        (31, "trente et un"),
        (45, "quarante-cinq"),
        (60, "soixante"),
        (61, "soixante et un"),
        (70, "soixante-dix"),
        (71, "soixante et onze"),
        (72, "soixante-douze"),
        (79, "soixante-dix-neuf"),
        (80, "quatre-vingts"),
        (81, "quatre-vingt-un"),
        (90, "quatre-vingt-dix"),
        (91, "quatre-vingt-onze"),
        (99, "quatre-vingt-dix-neuf"),
    ],
)
def test_numbers_in_french(n: int, words: str) -> None:
    assert number_fr(n) == words


def test_number_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"0\.\.99"):
        number_fr(100)


def test_pairs_with_a_leading_zero_say_zero() -> None:
    assert pair_fr("06") == "zéro six"
    assert pair_fr("00") == "zéro zéro"
    assert phone_fr("0612345678") == PAIRS


@pytest.mark.parametrize(
    "written",
    [
        "0612345678",
        "06 12 34 56 78",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "+33 6 12 34 56 78",
        "+33612345678",
        "0033 6 12 34 56 78",
        "+33 (0)6 12 34 56 78",
    ],
)
def test_phone_numbers_are_read_in_pairs(written: str) -> None:
    assert normalise(f"Votre numéro est le {written}.") == f"Votre numéro est le {PAIRS}."


def test_other_numbers_are_not_phone_numbers() -> None:
    for text in ("12 34", "en 2024", "06123456789", "061234567"):
        assert normalise(text) == text


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Votre ticket 48213 est ouvert.", "Votre ticket quatre huit deux un trois est ouvert."),
        ("ticket numéro 507", "ticket numéro cinq zéro sept"),
        ("Ticket n° TK-42", "Ticket n° T K quatre deux"),
        ("le ticket est ouvert", "le ticket est ouvert"),
    ],
)
def test_ticket_numbers_digit_by_digit(text: str, spoken: str) -> None:
    assert normalise(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Bienvenue au SAV Wipple", "Bienvenue au S A V Wipple"),
        ("Redémarrez votre box.", "Redémarrez votre boxe."),
        ("La Box internet", "La Boxe internet"),
        ("le réseau 4G ou 5G", "le réseau quatre G ou cinq G"),
        ("le wifi, le Wi-Fi, le WiFi", "le oui-fi, le oui-fi, le oui-fi"),
        ("un SMS", "un S M S"),
        ("une boxeuse", "une boxeuse"),  # only the word "box"
    ],
)
def test_domain_words(text: str, spoken: str) -> None:
    assert normalise(text) == spoken


def test_sentences() -> None:
    text = "Merci M. Dupont. Votre boxe redémarre ! Ça marche ? Très bien…  Au revoir"
    assert sentences(text) == [
        "Merci M. Dupont.",
        "Votre boxe redémarre !",
        "Ça marche ?",
        "Très bien…",
        "Au revoir",
    ]
    assert sentences("   ") == []
