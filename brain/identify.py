"""Which customer a caller probably is, from a misheard name and number (pure, no I/O).

Speech recognition gets French numbers wrong in ways a digit-by-digit comparison does not
forgive: "quatre-vingt-dix-huit" comes back as "48 8", a pair is dropped or doubled. Names fare
better ("Marie-Martin"), or at least sound alike ("Pire du bon" for "Pierre Dupont"). Each is
weak evidence alone; together they pick one customer out of the few whose number shares digits
with what was heard. The dialog then reads that customer's number back, and only the caller's
"oui" identifies them: a guess here costs a question, never a wrong identity.

A name alone never proposes anyone: reading a customer's number to a caller who only said a
similar name would give it away.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from brain.nlu.normalize import fold, words
from brain.nlu.numbers_fr import is_number_word
from brain.nlu.rules import NOT_NAME
from brain.phone import digit_edits

MIN_DIGITS = 6  # fewer digits heard than this say nothing about a number
# How far a heard number may be from a customer's, in digit edits, given how much the name
# agrees (SequenceMatcher ratio of the names' sounds, 0..1). Measured on the quality harness's
# misheard lines (bench/results/quality.json): the right customer's name scores 0.67-1.0 when
# it was heard at all, another customer's 0.2-0.5; its number is 2-5 edits away.
NUMBER_ALONE_EDITS = 2  # no name needed: a digit or two off
NAME_RULES = ((0.75, 5), (0.6, 4))  # (name likeness at least, edits at most)
CLEAR_LEAD = 0.5  # the best candidate's score must beat the next one's by this much


@dataclass(frozen=True, slots=True)
class Candidate:
    id: int
    name: str
    phone: str


# French spelling to rough sounds, in order: what a recogniser may write for the same name
# ("Dupont"/"du pont"/"du bon", "Martin"/"Marcin"). Nasal vowels become capitals.
_SOUNDS = (
    (r"[^a-z]", ""),
    (r"ph", "f"),
    (r"qu|q", "k"),
    (r"c(?=[eiy])", "s"),
    (r"ch|sh", "S"),
    (r"c", "k"),
    (r"g(?=[eiy])", "j"),
    (r"gu(?=[eiy])", "g"),
    (r"y", "i"),
    (r"h", ""),
    (r"(eau|au)", "o"),
    (r"(ain|ein)(?![aeiou])", "I"),
    (r"(ai|ei)", "e"),
    (r"(an|am|en|em)(?![aeiou])", "A"),
    (r"(on|om)(?![aeiou])", "O"),
    (r"(in|im|un)(?![aeiou])", "I"),
    (r"ou", "u"),
    (r"(er|ez|et)$", "e"),
    (r"(?<=[a-zA-Z])[estdxp]+$", ""),  # silent final letters
    (r"(.)\1+", r"\1"),
)


def sounds(name: str) -> str:
    """'Pierre Dupont' -> 'pieredupO', 'Pire du bon' -> 'piredubO': a key to compare names by
    how they sound, each word's silent ending dropped."""
    keys = []
    for word in fold(name).split():
        key = word
        for pattern, repl in _SOUNDS:
            key = re.sub(pattern, repl, key)
        keys.append(key)
    return "".join(keys)


# Words that end a name and start the number: "Pierre Zubon, mon numéro fixe, …".
_NUMBER_INTRO = frozenset(
    {"mon", "ma", "numero", "telephone", "fixe", "portable", "au", "le", "l", "est", "c", "et", "j"}
    | {"plus"}  # "+33"
)
MAX_NAME_WORDS = 4


def heard_name(text: str) -> str | None:
    """What the caller said before their number, as heard, for `name_likeness`: "Pire du bon"
    in "Pire du bon, 0.12 34 56 78". Broader than the NLU's name slot, which must be a name
    to be written on a ticket; this only has to sound like one."""
    parts: list[str] = []
    for w in words(text):
        if is_number_word(w.key) and (parts or w.key not in ("un", "une")):
            break
        if not parts and w.key in NOT_NAME:
            continue  # "bonjour, je m'appelle…"
        if parts and (w.key in _NUMBER_INTRO or len(parts) == MAX_NAME_WORDS):
            break
        parts.append(w.text)
    return " ".join(parts) or None


def name_likeness(heard: str, known: str) -> float:
    """0..1: how alike two names sound."""
    a, b = sounds(heard), sounds(known)
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _score(name: str | None, digits: str, c: Candidate) -> float | None:
    """How likely the caller is `c`, or None when the evidence is too weak to ask."""
    edits = digit_edits(digits, c.phone.lstrip("+"))
    likeness = name_likeness(name, c.name) if name else 0.0
    if edits <= NUMBER_ALONE_EDITS or any(
        likeness >= least and edits <= most for least, most in NAME_RULES
    ):
        return 2.0 * likeness - 0.5 * edits
    return None


def likeliest(name: str | None, digits: str, candidates: Iterable[Candidate]) -> Candidate | None:
    """The one customer the heard `name` and `digits` point to, clearly ahead of any other
    (with that customer's number closest to the digits); None when nothing fits well enough or
    two customers fit about as well (the caller is then asked, not guessed)."""
    digits = digits.lstrip("+")
    if len(digits) < MIN_DIGITS:
        return None
    best: dict[int, tuple[float, Candidate]] = {}  # a customer's best-fitting number
    for c in candidates:
        score = _score(name, digits, c)
        if score is not None and (c.id not in best or score > best[c.id][0]):
            best[c.id] = (score, c)
    ranked = sorted(best.values(), key=lambda sc: -sc[0])
    if not ranked:
        return None
    if len(ranked) > 1 and ranked[0][0] - ranked[1][0] < CLEAR_LEAD:
        return None
    return ranked[0][1]
