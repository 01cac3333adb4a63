"""French spoken numbers to digits, and phone numbers out of a transcript.

Callers read a phone number digit by digit ("zéro six un deux…"), in pairs ("zéro six douze
trente-quatre…"), or mixed with digits ("06, douze, 34…"). A number is read greedily, the longest
French number at each point ("soixante dix huit" is 78, not 60 10 8), with two exceptions that
follow how pairs are spoken: a pause (punctuation) ends a number, and a unit right after "zéro"
is a single digit ("zéro quatre vingt" is 04 20, not 0 80), unless hyphens join it
("zéro quatre-vingt" is 0 80) or "cent" follows ("zéro quatre cent septante et un" is 0 471).

Belgian and Swiss callers say "septante", "huitante"/"octante", "nonante", and group their
numbers otherwise ("0471 23 45 67", "079 123 45 67"): the groups a number was read in and those
words go with its digits to `brain.phone`, which tells a foreign number from a French one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from brain import phone
from brain.nlu.normalize import Word, words

UNITS: dict[str, int] = {
    "un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4,
    "cinq": 5, "six": 6, "sept": 7, "huit": 8, "neuf": 9,
}  # fmt: skip
TEENS: dict[str, int] = {
    "onze": 11, "douze": 12, "treize": 13, "quatorze": 14, "quinze": 15, "seize": 16,
}  # fmt: skip
# Belgian and Swiss tens included: septante, huitante, octante, nonante.
TENS: dict[str, int] = {
    "vingt": 20, "vingts": 20, "trente": 30, "quarante": 40, "cinquante": 50, "soixante": 60,
    "septante": 70, "huitante": 80, "octante": 80, "nonante": 90,
}  # fmt: skip
_REGIONAL_TENS = frozenset({"septante", "huitante", "octante", "nonante"})
_ZERO = frozenset({"zero"})
_HUNDRED = frozenset({"cent", "cents"})
_REPEAT = {"double": 2, "triple": 3}
# Words a caller drops in the middle of a number without ending it.
FILLERS = frozenset({"euh", "heu", "hum", "hmm", "hm", "bah", "ben", "eh", "alors", "donc"})

ATOMS = frozenset(
    UNITS.keys() | TEENS.keys() | TENS.keys() | _ZERO | _HUNDRED | _REPEAT.keys() | {"dix", "et"}
)


@dataclass(frozen=True, slots=True)
class _Atom:
    key: str
    glued: bool  # hyphen-joined to the previous atom ("quatre-vingt")
    pause_before: bool


def _is_digits(key: str) -> bool:
    return key.isascii() and key.isdigit()  # not "²" nor other Unicode digits


def is_number_word(key: str) -> bool:
    """'06', 'douze', 'soixante-dix-huit', 'double': a word that can be part of a number."""
    parts = key.split("-")
    return all(p in ATOMS or _is_digits(p) for p in parts) and parts != ["et"]


def _atoms(keys: Sequence[str], pauses: Sequence[bool]) -> list[_Atom]:
    out: list[_Atom] = []
    for key, pause in zip(keys, pauses, strict=True):
        for i, part in enumerate(key.split("-")):
            out.append(_Atom(part, glued=i > 0, pause_before=pause and i == 0))
    return out


class _Reader:
    """Reads numbers off a list of atoms, greedily, one number per `read` call."""

    def __init__(self, atoms: list[_Atom]) -> None:
        self.atoms = atoms
        self.i = 0

    def peek(self, offset: int = 0) -> str | None:
        j = self.i + offset
        return self.atoms[j].key if j < len(self.atoms) else None

    def joins(self, offset: int = 0, *, compound: bool = False) -> bool:
        """May the atom at `offset` extend the number being read? Not after a pause, and not
        when it starts a hyphenated number of its own ("quarante quatre-vingt-un" is 40 81)
        unless that is what follows (`compound`: "cent quarante-cinq")."""
        j = self.i + offset
        if j >= len(self.atoms) or self.atoms[j].pause_before:
            return False
        starts_compound = j + 1 < len(self.atoms) and self.atoms[j + 1].glued
        return compound or self.atoms[j].glued or not starts_compound

    def take_if(self, keys: frozenset[str] | dict[str, int], *, offset: int = 0) -> str | None:
        key = self.peek(offset)
        if key is not None and key in keys and self.joins(offset):
            self.i += offset + 1
            return key
        return None

    def read(self, *, after_zero: bool = False) -> str | None:
        """The digits of the next number, or None (the atom is skipped) if it starts none."""
        key = self.atoms[self.i].key
        self.i += 1
        if _is_digits(key):
            return key
        if key in _ZERO:
            return "0"
        if key in _REPEAT:
            if self.peek() is not None and self.joins():
                digits = self.read()
                return digits * _REPEAT[key] if digits else None
            return None
        glued = self.atoms[self.i].glued if self.i < len(self.atoms) else False
        # "zéro quatre cent septante et un" is 0 471 (Belgian mobiles are read so), not 04 171.
        hundreds = self.peek() in _HUNDRED and key not in ("un", "une")
        if key in UNITS and after_zero and not glued and not hundreds:
            return str(UNITS[key])
        value = self._below_1000(key)
        return None if value is None else str(value)

    def _below_1000(self, key: str) -> int | None:
        if key in _HUNDRED:
            return 100 + (self._below_100_after() or 0)
        if key in UNITS and key not in ("un", "une") and self.take_if(_HUNDRED):
            return UNITS[key] * 100 + (self._below_100_after() or 0)
        return self._below_100(key)

    def _below_100_after(self) -> int | None:
        key = self.peek()
        if key is None or not self.joins(compound=True) or key in _ZERO or not is_number_word(key):
            return None
        if _is_digits(key) or key in _REPEAT or key == "et":
            return None
        self.i += 1
        value = self._below_100(key)
        if value is None:
            self.i -= 1
        return value

    def _below_100(self, key: str) -> int | None:
        if key in UNITS:
            vingt = self.take_if(frozenset({"vingt", "vingts"})) if key == "quatre" else None
            if vingt:
                # "quatre-vingts" takes its s only when nothing follows: the number ends there.
                return 80 + (self._after_tens(80) if vingt == "vingt" else 0)
            return UNITS[key]
        if key == "dix":
            return 10 + self._dix_suffix()
        if key in TEENS:
            return TEENS[key]
        if key in TENS:
            return TENS[key] + (self._after_tens(TENS[key]) if key != "vingts" else 0)
        return None

    def _dix_suffix(self) -> int:
        unit = self.take_if(frozenset({"sept", "huit", "neuf"}))
        return UNITS[unit] if unit else 0

    def _after_tens(self, tens: int) -> int:
        """What follows 'vingt', 'soixante', 'quatre-vingt': 'et un', units, and for 60 and 80
        the teens that make 70-79 and 90-99."""
        if (
            self.peek() == "et"
            and self.joins()
            and self.take_if(frozenset({"un", "une", "onze"}), offset=1)
        ):
            return 1 if self.atoms[self.i - 1].key != "onze" else 11
        if tens in (60, 80):
            if self.take_if(frozenset({"dix"})):
                return 10 + self._dix_suffix()
            teen = self.take_if(TEENS)
            if teen:
                return TEENS[teen]
        unit = self.take_if(UNITS)
        return UNITS[unit] if unit else 0


def groups_of(keys: Sequence[str], pauses: Sequence[bool] | None = None) -> list[str]:
    """The numbers a run of folded number words says, each as its digits:
    ['zero', 'six', 'soixante-dix-huit'] -> ['0', '6', '78'].

    Words that start no number ('et' alone, fillers) are skipped."""
    atoms = _atoms(keys, pauses if pauses is not None else [False] * len(keys))
    reader = _Reader(atoms)
    out: list[str] = []
    # A "zéro" that opens a pair ("zéro quatre"); in "zéro zéro" the second one closes it.
    open_zero = False
    while reader.i < len(atoms):
        digits = reader.read(after_zero=open_zero)
        open_zero = atoms[reader.i - 1].key in _ZERO and not open_zero
        if digits is not None:
            out.append(digits)
    return out


def digits_of(keys: Sequence[str], pauses: Sequence[bool] | None = None) -> str:
    """The digits a run of folded number words says: ['zero', 'six', 'soixante-dix-huit'] ->
    '0678'."""
    return "".join(groups_of(keys, pauses))


def to_digits(text: str) -> str:
    """'zéro six, douze' -> '0612': the digits of every number in `text`, other words ignored."""
    ws = [w for w in words(text) if is_number_word(w.key)]
    return digits_of([w.key for w in ws], [w.pause_before for w in ws])


def phone_from_digits(
    digits: str,
    *,
    international: bool = False,
    shape: tuple[int, ...] = (),
    regional: bool = False,
) -> str | None:
    """A phone number from what was read: '+33 6…', '0033 6…', '33 (0)6…' -> '06…'; Belgian
    and Swiss numbers in E.164 (see `brain.phone.from_digits`)."""
    return phone.from_digits(digits, international=international, shape=shape, regional=regional)


def normalize_phone(text: str) -> str | None:
    """'+33 6 12 34 56 78', '06.12.34.56.78', 'zéro six douze…' -> '0612345678';
    '+32 471 23 45 67', 'zéro septante-neuf, cent vingt-trois…' -> E.164; else None."""
    found = find_phone(words(text))
    return found.phone if found else None


@dataclass(frozen=True, slots=True)
class PhoneMatch:
    phone: str
    start: int  # index of the first word of the number in the word list
    end: int  # index after its last word


def find_phone(ws: Sequence[Word]) -> PhoneMatch | None:
    """The first phone number (French, Belgian or Swiss) in a transcript's words."""
    i = 0
    while i < len(ws):
        start = i
        international = ws[i].key == "plus"
        if international:
            i += 1
        run: list[Word] = []
        while i < len(ws) and (is_number_word(ws[i].key) or (run and _inside_number(ws, i))):
            run.append(ws[i])
            i += 1
        numbers = [w for w in run if w.key not in FILLERS]
        if numbers:
            groups = groups_of([w.key for w in numbers], [w.pause_before for w in numbers])
            regional = any(p in _REGIONAL_TENS for w in numbers for p in w.key.split("-"))
            # A nine-digit number grouped the Belgian way is a Belgian landline only when the
            # caller's words were transcribed as words: a recogniser writing digits groups them
            # as it likes, and "0.12 34 56 78" is a French number it lost a digit of.
            digits = "".join(groups)
            spoken = not all(_is_digits(w.key) for w in numbers)
            shape = _shape(groups) if spoken or len(digits) != 9 else ()
            phone = phone_from_digits(
                digits, international=international, shape=shape, regional=regional
            )
            if phone:
                return PhoneMatch(phone, start, start + (1 if international else 0) + len(run))
        i = max(i, start + 1)
    return None


def _shape(groups: list[str]) -> tuple[int, ...]:
    """The lengths of the groups a number was read in, a lone leading "0" counted with the
    group after it: "zéro septante-neuf, cent vingt-trois, …" is (3, 3, 2, 2)."""
    if len(groups) > 1 and groups[0] == "0":
        groups = [groups[0] + groups[1], *groups[2:]]
    return tuple(len(g) for g in groups)


def _inside_number(ws: Sequence[Word], i: int) -> bool:
    """A filler, or the 'et' of 'vingt et un', inside a number that goes on."""
    key = ws[i].key
    return key in FILLERS or (key == "et" and i + 1 < len(ws) and is_number_word(ws[i + 1].key))
