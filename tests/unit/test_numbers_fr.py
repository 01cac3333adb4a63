"""French spoken numbers to digits: every pair 00..99 round-trips, in phone numbers too.

The words are generated here by a small writer of French numbers, independent of the parser.
"""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from brain.nlu.normalize import words
from brain.nlu.numbers_fr import (
    digits_of,
    find_phone,
    is_number_word,
    normalize_phone,
    phone_from_digits,
    to_digits,
)

_UNITS = ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"]
_TEENS = [
    "dix", "onze", "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit",
    "dix-neuf",
]  # fmt: skip
_TENS = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}


def french(n: int) -> str:
    """0..99 as written in France: 'soixante et onze', 'quatre-vingts', 'quatre-vingt-un'."""
    if n < 10:
        return _UNITS[n]
    if n < 20:
        return _TEENS[n - 10]
    if n < 70:
        tens, unit = divmod(n, 10)
        if unit == 0:
            return _TENS[tens]
        return f"{_TENS[tens]} et un" if unit == 1 else f"{_TENS[tens]}-{_UNITS[unit]}"
    if n < 80:
        return "soixante et onze" if n == 71 else f"soixante-{_TEENS[n - 70]}"
    if n == 80:
        return "quatre-vingts"
    rest = n - 80
    return f"quatre-vingt-{_UNITS[rest] if rest < 10 else _TEENS[rest - 10]}"


def pair(n: int) -> str:
    """A pair of a phone number as said aloud: 05 is 'zéro cinq'."""
    return f"zéro {french(n)}" if n < 10 else french(n)


def test_the_writer_knows_the_irregulars() -> None:
    assert [french(n) for n in (21, 70, 71, 77, 80, 81, 90, 91, 99)] == [
        "vingt et un", "soixante-dix", "soixante et onze", "soixante-dix-sept", "quatre-vingts",
        "quatre-vingt-un", "quatre-vingt-dix", "quatre-vingt-onze", "quatre-vingt-dix-neuf",
    ]  # fmt: skip


@pytest.mark.parametrize("n", range(100))
def test_every_pair_round_trips(n: int) -> None:
    assert to_digits(pair(n)) == f"{n:02d}"
    # ASR engines drop the hyphens.
    assert to_digits(pair(n).replace("-", " ")) == f"{n:02d}"


@pytest.mark.parametrize("n", range(100))
def test_every_pair_round_trips_inside_a_phone_number(n: int) -> None:
    said = " ".join(["zéro six", *[pair(n)] * 4])
    assert normalize_phone(said) == "06" + f"{n:02d}" * 4
    assert normalize_phone(said.replace("-", " ")) == "06" + f"{n:02d}" * 4


def test_random_phone_numbers_in_pairs_digits_and_mixed() -> None:
    rng = random.Random(20240611)
    for _ in range(2000):
        pairs = [rng.randint(1, 9), *(rng.randint(0, 99) for _ in range(4))]
        expected = "".join(f"{p:02d}" for p in pairs)
        in_pairs = " ".join(pair(p) for p in pairs)
        digit_by_digit = " ".join(_UNITS[int(d)] for d in expected)
        mixed = ", ".join(pair(p) if i % 2 else f"{p:02d}" for i, p in enumerate(pairs))
        said = [digit_by_digit, mixed]
        if not _ambiguous(pairs):
            said.append(in_pairs)
        if not _ambiguous_without_hyphens(pairs):
            said.append(in_pairs.replace("-", " "))
        for s in said:
            assert normalize_phone(s) == expected, s


def _ambiguous(pairs: list[int]) -> bool:
    """60 then 10..16 is said "soixante dix", "soixante onze"…: French cannot tell it from 70..76
    (callers who read pairs say "soixante, dix" with a pause, which the ASR may not write)."""
    return any(a == 60 and 10 <= b <= 16 for a, b in pairwise(pairs))


def _ambiguous_without_hyphens(pairs: list[int]) -> bool:
    """Pairs that French says alike once the hyphens are gone, so only prosody tells them
    apart: 60 10 / 70 ("soixante dix"), 40 81 / 44 21 ("quarante quatre vingt un")."""
    return any(
        (a == 60 and 10 <= b <= 19) or (a in (20, 30, 40, 50, 60) and b >= 80)
        for a, b in pairwise(pairs)
    )


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("vingt-et-un", "21"),
        ("vingt et un", "21"),
        ("vingt un", "21"),
        ("soixante onze", "71"),
        ("quatre vingt", "80"),
        ("quatre-vingt", "80"),
        ("quatre vingt un", "81"),
        ("quatre-vingt-dix-sept", "97"),
        ("septante-deux", "72"),
        ("huitante", "80"),
        ("octante et un", "81"),
        ("nonante-neuf", "99"),
        ("cent", "100"),
        ("cent douze", "112"),
        ("deux cents", "200"),
        ("trois cent quarante-cinq", "345"),
        ("double zéro", "00"),
        ("triple sept", "777"),
        ("zéro zéro", "00"),
        ("un deux trois", "123"),
        ("dix sept", "17"),
        ("dix, sept", "107"),  # a pause ends a number
        ("soixante, dix", "6010"),
        ("soixante dix", "70"),  # greedy when nothing tells them apart
        ("zéro quatre vingt", "0420"),  # after zéro, a unit is one digit: 04 20
        ("zéro quatre-vingt", "080"),  # unless hyphens say otherwise
        ("quatre-vingts dix", "8010"),  # "quatre-vingts" with its s ends the number
        ("quatre-vingt dix", "90"),
        ("quarante quatre-vingt-un", "4081"),  # a hyphenated number stands on its own
        ("quarante quatre vingt un", "4421"),
        ("soixante dix-sept", "6017"),
        ("cent vingt-deux", "122"),
        ("06 douze 34", "061234"),
        ("euh douze", "12"),
        ("zéro quatre cent septante et un", "0471"),  # "cent" joins the unit after zéro
        ("zéro un cent", "01100"),  # but "un cent" is no hundred
        ("septante-sept", "77"),
        ("huitante-huit", "88"),
        ("nonante et un", "91"),
    ],
)
def test_digits(said: str, digits: str) -> None:
    assert to_digits(said) == digits


@pytest.mark.parametrize(
    ("said", "phone"),
    [
        ("06 12 34 56 78", "0612345678"),
        ("06.12.34.56.78", "0612345678"),
        ("06-12-34-56-78", "0612345678"),
        ("0612345678", "0612345678"),
        ("+33 6 12 34 56 78", "0612345678"),
        ("+33612345678", "0612345678"),
        ("+33 (0)6 12 34 56 78", "0612345678"),
        ("0033 6 12 34 56 78", "0612345678"),
        ("plus trente-trois six douze trente-quatre cinquante-six soixante-dix-huit", "0612345678"),
        ("plus trente trois zéro six douze trente quatre cinquante six soixante dix huit",
         "0612345678"),
        ("trente-trois six douze trente-quatre cinquante-six soixante-dix-huit", "0612345678"),
        ("zéro un quarante-cinq soixante-sept quatre-vingt-neuf dix", "0145678910"),
        ("j'ai un 06 12 34 56 78", "0612345678"),
        ("06 12 34 56", None),  # too short
        ("06 12 34 56 78 90", None),  # too long
        ("00 12 34 56 78", None),
        ("16 12 34 56 78", None),
        ("plus trente-trois douze", None),
        ("il est six heures", None),
        # Belgian and Swiss numbers, to E.164
        ("+32 471 23 45 67", "+32471234567"),
        ("+32471234567", "+32471234567"),
        ("0032 471 23 45 67", "+32471234567"),
        ("+32 (0)471 23 45 67", "+32471234567"),
        ("0471 23 45 67", "+32471234567"),  # Belgian grouping of a Belgian mobile
        ("+32 2 123 45 67", "+3221234567"),
        # Nine digits as a recogniser writes them: a French number with a digit lost (the
        # brain looks up the customer a digit away), not a Belgian landline; said as words,
        # a Belgian landline it is.
        ("02 123 45 67", None),
        ("010 12 34 56", None),
        ("0.12 34 56 78", None),
        ("zéro deux, cent vingt-trois, quarante-cinq, soixante-sept", "+3221234567"),
        ("+41 79 123 45 67", "+41791234567"),
        ("0041 79 123 45 67", "+41791234567"),
        ("+41 (0)79 123 45 67", "+41791234567"),
        ("079 123 45 67", "+41791234567"),
        ("022 730 45 67", "+41227304567"),
        ("zéro quatre septante et un vingt-trois quarante-cinq soixante-sept", "+32471234567"),
        ("zéro septante-neuf, cent vingt-trois, quarante-cinq, soixante-sept", "+41791234567"),
        ("zéro vingt-deux, sept cent trente, quarante-cinq, soixante-sept", "+41227304567"),
        ("plus trente-deux quatre cent septante et un vingt-trois quarante-cinq soixante-sept",
         "+32471234567"),
        ("plus quarante et un septante-neuf cent vingt-trois quarante-cinq soixante-sept",
         "+41791234567"),
        # ... and French numbers stay French, however they are grouped or said
        ("04 71 23 45 67", "0471234567"),  # French pairs: a French number in the south-east
        ("0471234567", "0471234567"),
        ("07 91 23 45 67", "0791234567"),
        ("0612 34 56 78", "0612345678"),
        ("zéro six douze trente-quatre cinquante-six septante-huit", "0612345678"),
        ("zéro sept quatre-vingt-dix-neuf douze trente-quatre cinquante-six", "0799123456"),
        ("+32 12 34", None),
        ("+41 61 234 56", None),  # too short
        ("+44 20 7946 0958", None),  # other countries: not ours to read
    ],
)  # fmt: skip
def test_normalize_phone(said: str, phone: str | None) -> None:
    assert normalize_phone(said) == phone


def test_find_phone_says_where_the_number_is() -> None:
    ws = words(
        "Pierre Dupont, zéro six, douze, trente-quatre, euh, cinquante-six soixante-dix-huit merci"
    )
    found = find_phone(ws)
    assert found is not None
    assert found.phone == "0612345678"
    assert [w.text for w in ws[: found.start]] == ["Pierre", "Dupont"]
    assert ws[found.end].text == "merci"


def test_phone_from_digits() -> None:
    assert phone_from_digits("612345678", international=True) == "0612345678"
    assert phone_from_digits("612345678") is None
    assert phone_from_digits("") is None


@pytest.mark.parametrize(
    ("key", "number"),
    [("06", True), ("soixante-dix-huit", True), ("double", True), ("et", False),
     ("dupont", False), ("²", False), ("vingt-et-un", True), ("06-12", True)],
)  # fmt: skip
def test_is_number_word(key: str, number: bool) -> None:
    assert is_number_word(key) is number


def test_digits_of_takes_folded_words_and_pauses() -> None:
    assert digits_of(["soixante", "dix"]) == "70"
    assert digits_of(["soixante", "dix"], [False, True]) == "6010"
