"""Phone numbers as the brain keeps them: what trunks send, what callers read, what is read back."""

from __future__ import annotations

import pytest

from brain.phone import caller_id, digit_edits, from_digits, spoken


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        # French numbers, however the trunk writes them
        ("+33 6 12 34 56 78", "0612345678"),
        ("+33612345678", "0612345678"),
        ("0033612345678", "0612345678"),
        ("33612345678", "0612345678"),  # E.164 without its "+", as some trunks send
        ("+33 (0)6 12 34 56 78", "0612345678"),
        ("06.12.34.56.78", "0612345678"),
        ("06 12 34 56 78", "0612345678"),
        ("0612345678", "0612345678"),
        ("612345678", "0612345678"),  # the national 0 dropped
        (" 01-45-67-89-12 ", "0145678912"),
        # Belgian and Swiss numbers, in E.164
        ("+32 471 23 45 67", "+32471234567"),
        ("0032471234567", "+32471234567"),
        ("32471234567", "+32471234567"),
        ("+3221234567", "+3221234567"),
        ("+41 79 123 45 67", "+41791234567"),
        ("0041791234567", "+41791234567"),
        ("41791234567", "+41791234567"),
        # other countries as E.164, looked up as such
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        # no phone number at all
        (None, None),
        ("", None),
        ("anonymous", None),
        ("1001", None),  # an extension
        ("+33 12", None),
        ("0012345678", None),
    ],
)
def test_caller_id(raw: str | None, number: str | None) -> None:
    assert caller_id(raw) == number


@pytest.mark.parametrize("raw", ["+33 6 12 34 56 78", "+32 471 23 45 67", "+41 79 123 45 67"])
def test_caller_id_is_idempotent(raw: str) -> None:
    once = caller_id(raw)
    assert once is not None and caller_id(once) == once


@pytest.mark.parametrize(
    ("digits", "kw", "number"),
    [
        ("0612345678", {}, "0612345678"),
        ("612345678", {"international": True}, "0612345678"),
        ("33612345678", {}, "0612345678"),
        ("0471234567", {}, "0471234567"),  # French unless said otherwise
        ("0471234567", {"shape": (4, 2, 2, 2)}, "+32471234567"),
        ("0471234567", {"regional": True}, "+32471234567"),
        ("0441234567", {"regional": True}, "0441234567"),  # no Belgian mobile starts 044
        ("021234567", {"shape": (2, 3, 2, 2)}, "+3221234567"),
        ("021234567", {}, None),  # nine digits said in pairs: a French number missing one
        ("0791234567", {"shape": (3, 3, 2, 2)}, "+41791234567"),
        ("0791234567", {"regional": True}, "+41791234567"),
        ("0612345678", {"regional": True}, "0612345678"),  # a Belgian with a French mobile
        ("0612345678", {"shape": (4, 2, 2, 2)}, "0612345678"),
    ],
)
def test_from_digits(digits: str, kw: dict[str, object], number: str | None) -> None:
    assert from_digits(digits, **kw) == number  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("phone", "said"),
    [
        ("0611223344", "0611223344"),  # the TTS reads French numbers in pairs itself
        ("+32471234567", "+32 471 23 45 67"),
        ("+3221234567", "+32 2 123 45 67"),
        ("+41791234567", "+41 79 123 45 67"),
        ("+442079460958", "+442079460958"),
    ],
)
def test_spoken(phone: str, said: str) -> None:
    assert spoken(phone) == said


@pytest.mark.parametrize(
    ("a", "b", "edits"),
    [
        ("0612345678", "0612345678", 0),
        ("0612345678", "0612345679", 1),  # a digit wrong
        ("0612345678", "061234568", 1),  # a digit missing
        ("0612345678", "06123456778", 1),  # a digit added
        ("0612345678", "0621345678", 2),  # two swapped
        ("0612345678", "0698765432", 7),
    ],
)
def test_digit_edits(a: str, b: str, edits: int) -> None:
    assert digit_edits(a, b) == edits == digit_edits(b, a)
