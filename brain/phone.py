"""Phone numbers as the brain keeps and looks them up (pure).

French numbers are kept as 10 national digits ("0612345678"), as the customers table holds them;
Belgian and Swiss numbers in E.164 ("+32471234567", "+41791234567"), since their national forms
("0471…", "079…") collide with French ones. `from_digits` turns the digits a caller said into
one of those (`brain.nlu.numbers_fr` reads the words); `caller_id` does the same for the calling
number a trunk or the dialplan hands over: "+33 6 12 34 56 78", "0033612345678", "33612345678"
and "06.12.34.56.78" all become "0612345678".
"""

from __future__ import annotations

import re

FRANCE, BELGIUM, SWITZERLAND = "33", "32", "41"
# Belgian mobiles are 04 then 5..9 (0456, 046x..049x); 04 then another digit is a French number.
_BELGIAN_MOBILE = re.compile(r"04[5-9]\d{7}")
_SWISS_MOBILE = re.compile(r"07[5-9]\d{7}")
# National digit groupings that are not French pairs: Belgian mobile 0471 23 45 67, Belgian
# landlines 02 123 45 67 and 010 12 34 56, Swiss 079 123 45 67.
_BELGIAN_SHAPES = frozenset({(4, 2, 2, 2), (2, 3, 2, 2), (3, 2, 2, 2)})
_SWISS_SHAPES = frozenset({(3, 3, 2, 2)})
_NOT_DIGIT = re.compile(r"\D")


def _french(nsn: str) -> str | None:
    """A French number from its national significant number, "(0)" tolerated."""
    nsn = nsn.removeprefix("0")
    return "0" + nsn if len(nsn) == 9 and nsn[0] != "0" else None


def _belgian(nsn: str) -> str | None:
    nsn = nsn.removeprefix("0")
    if (len(nsn) == 8 and nsn[0] != "0") or (len(nsn) == 9 and nsn[0] == "4"):
        return "+" + BELGIUM + nsn
    return None


def _swiss(nsn: str) -> str | None:
    nsn = nsn.removeprefix("0")
    return "+" + SWITZERLAND + nsn if len(nsn) == 9 and nsn[0] != "0" else None


_BY_CODE = {FRANCE: _french, BELGIUM: _belgian, SWITZERLAND: _swiss}


def _with_country_code(digits: str) -> str | None:
    """Digits after a "+" or "00": a country code we serve, then its national number."""
    for code, national in _BY_CODE.items():
        if digits.startswith(code):
            return national(digits[len(code) :])
    # "+" then a national number ("plus zéro six…"): read it as French, as callers mean it.
    return _french(digits)


def _foreign_national(digits: str, shape: tuple[int, ...], regional: bool) -> str | None:
    """A national number said the Belgian or Swiss way, or None to read it as French.

    "septante"/"nonante" alone do not make a number foreign: a Belgian may well have a French
    mobile. They decide only where the digits fit the other country too."""
    belgian_mobile = _BELGIAN_MOBILE.fullmatch(digits) is not None
    if len(digits) == 9 and (shape in _BELGIAN_SHAPES or regional):
        return _belgian(digits)
    if belgian_mobile and (shape == (4, 2, 2, 2) or regional):
        return _belgian(digits)
    swiss_lead = shape[:1] == (3,) or _SWISS_MOBILE.fullmatch(digits) is not None
    if len(digits) == 10 and (shape in _SWISS_SHAPES or (regional and swiss_lead)):
        return _swiss(digits)
    return None


def from_digits(
    digits: str,
    *,
    international: bool = False,
    shape: tuple[int, ...] = (),
    regional: bool = False,
) -> str | None:
    """The number a caller read, from its digits, or None.

    `international`: a "+" came first. `shape`: the lengths of the groups it was read in (a
    leading lone "0" counted with the next group), which tells "0471 23 45 67" (Belgian) and
    "079 123 45 67" (Swiss) from French pairs. `regional`: it was read with "septante",
    "huitante", "octante" or "nonante", which no one says in France."""
    if digits.startswith("00"):
        digits, international = digits[2:], True
    if international:
        return _with_country_code(digits)
    if digits.startswith(FRANCE) and len(digits) in (11, 12):
        return _french(digits[2:])  # "trente-trois six douze…" without the "plus"
    if shape in _BELGIAN_SHAPES | _SWISS_SHAPES or regional:
        foreign = _foreign_national(digits, shape, regional)
        if foreign is not None:
            return foreign
    if len(digits) in (11, 12) and digits[-10] == "0":
        # A word before the number that reads as a digit: "j'ai un 06…".
        digits = digits[-10:]
    if len(digits) == 10 and digits[0] == "0" and digits[1] != "0":
        return digits
    return None


def caller_id(raw: str | None) -> str | None:
    """The calling number as the brain looks it up, or None when it is no phone number (an
    extension, "anonymous"). Trunks send E.164 with or without its "+", "00" prefixes or the
    national form; French numbers come out as "0612345678", Belgian and Swiss in E.164, other
    countries as "+" and their digits."""
    if raw is None:
        return None
    raw = raw.strip()
    international = raw.startswith("+")
    digits = _NOT_DIGIT.sub("", raw)
    if digits.startswith("00"):
        digits, international = digits[2:], True
    if international:
        known = _with_country_code(digits)
        if known is not None or digits[:2] in _BY_CODE:
            return known
        return "+" + digits if 10 <= len(digits) <= 15 else None
    if len(digits) == 10 and digits[0] == "0" and digits[1] != "0":
        return digits
    if len(digits) == 9 and digits[0] != "0":
        return "0" + digits  # a French trunk that drops the leading 0
    if digits[:2] in _BY_CODE and len(digits) >= 10:
        return _with_country_code(digits)  # E.164 without its "+"
    return None


def spoken(phone: str) -> str:
    """How the bot reads a number back: French numbers as they are (the TTS reads them in
    pairs), foreign ones in their usual groups so they are not read as one big number."""
    if not phone.startswith("+"):
        return phone
    code, nsn = phone[1:3], phone[3:]
    if code == BELGIUM and len(nsn) == 9:
        groups = [nsn[:3], nsn[3:5], nsn[5:7], nsn[7:]]
    elif code == BELGIUM and len(nsn) == 8:
        groups = [nsn[:1], nsn[1:4], nsn[4:6], nsn[6:]]
    elif code == SWITZERLAND and len(nsn) == 9:
        groups = [nsn[:2], nsn[2:5], nsn[5:7], nsn[7:]]
    else:
        return phone
    return " ".join(["+" + code, *groups])


def digit_edits(a: str, b: str) -> int:
    """Levenshtein distance between two digit strings (edits of single digits)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
