"""French text normalisation so the SAV's vocabulary is spoken right (pure).

Phone numbers are read in pairs the French way ("zéro six, douze, trente-quatre, …"), ticket
numbers digit by digit, acronyms letter by letter, and the English-looking words of the domain
("box", "wifi") spelled the way a French speaker says them. Also splits a reply into sentences,
the unit the worker synthesizes and caches.
"""

from __future__ import annotations

import re
from typing import Final

_UNITS: Final = (
    "zéro",
    "un",
    "deux",
    "trois",
    "quatre",
    "cinq",
    "six",
    "sept",
    "huit",
    "neuf",
    "dix",
    "onze",
    "douze",
    "treize",
    "quatorze",
    "quinze",
    "seize",
    "dix-sept",
    "dix-huit",
    "dix-neuf",
)
_TENS: Final = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}


def number_fr(n: int) -> str:
    """0..99 in French words (traditional spelling, as spoken)."""
    if not 0 <= n < 100:
        raise ValueError(f"{n} is not in 0..99")
    if n < 20:
        return _UNITS[n]
    tens, unit = divmod(n, 10)
    if tens in (7, 9):  # soixante-dix.., quatre-vingt-dix..: base 60/80 plus 10..19
        base = "soixante" if tens == 7 else "quatre-vingt"
        rest = 10 + unit
        joiner = " et " if (tens == 7 and unit == 1) else "-"
        return f"{base}{joiner}{_UNITS[rest]}"
    if tens == 8:
        return "quatre-vingts" if unit == 0 else f"quatre-vingt-{_UNITS[unit]}"
    word = _TENS[tens]
    if unit == 0:
        return word
    if unit == 1:
        return f"{word} et un"
    return f"{word}-{_UNITS[unit]}"


def digits_fr(digits: str) -> str:
    return " ".join(_UNITS[int(d)] for d in digits)


def pair_fr(pair: str) -> str:
    """One pair of a phone number: "06" -> "zéro six", "12" -> "douze"."""
    if pair[0] == "0":
        return f"zéro {_UNITS[int(pair[1])]}"
    return number_fr(int(pair))


def phone_fr(digits: str) -> str:
    """A 10-digit French number read in pairs."""
    return ", ".join(pair_fr(digits[i : i + 2]) for i in range(0, 10, 2))


_SEP = r"[ .\-]?"
# 06 12 34 56 78, 06.12.34.56.78, 0612345678, +33 6 12 34 56 78, +33612345678, 0033 6...
_PHONE: Final = re.compile(
    r"(?<![\d+])(?:(?:\+|00)33"
    + _SEP
    + r"(?:\(0\))?"
    + _SEP
    + r"([1-9])|0([1-9]))"
    + r"((?:"
    + _SEP
    + r"\d\d){4})(?!\d)"
)
_TICKET: Final = re.compile(
    r"\b(tickets?|dossiers?|références?)(\s+(?:numéro|n°|no\.?|#)?\s*:?\s*)"
    r"((?=[A-Za-z0-9-]*\d)[A-Za-z0-9][A-Za-z0-9-]*)",
    re.IGNORECASE,
)
_GENERATION: Final = re.compile(r"\b([2345])G\b", re.IGNORECASE)
_WIFI: Final = re.compile(r"\bwi[- ]?fi\b", re.IGNORECASE)
_BOX: Final = re.compile(r"\b(b)ox(es)?\b", re.IGNORECASE)
_ACRONYMS: Final = ("SAV", "SMS", "ADSL", "FAI", "SIM", "TV")
_ACRONYM: Final = re.compile(r"\b(" + "|".join(_ACRONYMS) + r")\b")


def _phone(match: re.Match[str]) -> str:
    first = match.group(1) or match.group(2)
    rest = re.sub(r"\D", "", match.group(3))
    return phone_fr("0" + first + rest)


def _spell(token: str) -> str:
    """A reference read one character at a time: digits as words, letters as letters."""
    parts = [_UNITS[int(c)] if c.isdigit() else c.upper() for c in token if c.isalnum()]
    return " ".join(parts)


def _ticket(match: re.Match[str]) -> str:
    word, between, ref = match.groups()
    return f"{word}{between}{_spell(ref)}"


def _box(match: re.Match[str]) -> str:
    return f"{match.group(1)}oxe" + ("s" if match.group(2) else "")


def normalise(text: str) -> str:
    """`text` rewritten so a French voice says the domain's words correctly."""
    text = _PHONE.sub(_phone, text)
    text = _TICKET.sub(_ticket, text)
    text = _GENERATION.sub(lambda m: f"{_UNITS[int(m.group(1))]} G", text)
    text = _WIFI.sub("oui-fi", text)
    text = _BOX.sub(_box, text)
    text = _ACRONYM.sub(lambda m: " ".join(m.group(1)), text)
    return re.sub(r"\s+", " ", text).strip()


_ABBREVIATIONS: Final = ("M", "Mme", "Mlle", "Dr", "St", "n°", "etc")
_SENTENCE_END: Final = re.compile(r"(?<=[.!?…])\s+")


def sentences(text: str) -> list[str]:
    """`text` cut after . ! ? … (not after "M." and the like); empty pieces dropped."""
    pieces: list[str] = []
    carry = ""
    for piece in _SENTENCE_END.split(text.strip()):
        current = f"{carry} {piece}" if carry else piece
        last_word = current.rstrip(".").rsplit(" ", 1)[-1]
        if current.endswith(".") and last_word in _ABBREVIATIONS:
            carry = current
            continue
        carry = ""
        if current.strip():
            pieces.append(current.strip())
    if carry.strip():
        pieces.append(carry.strip())
    return pieces
