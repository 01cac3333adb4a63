"""Text normalisation for matching French speech transcripts.

Two views of one utterance: `fold` gives a flat string for phrase matching (lower case, no
accents, no punctuation), `words` gives the words with their original spelling kept, so a name
comes back as "François Lefèvre" and not "francois lefevre".
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

# Apostrophes and dashes as ASR engines and keyboards write them.
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'"})
_DASHES = str.maketrans({"‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-"})

# A word keeps its inner hyphens ("quatre-vingt-dix", "Jean-Pierre"); "+" is a word of its own
# because "+33" means something.
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*|\+")
# Punctuation between two words that marks a pause: numbers do not combine across it.
_BREAK = re.compile(r"[,;:.!?()/]")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True, slots=True)
class Word:
    text: str  # as written, accents and case kept
    key: str  # folded: lower case, no accents, hyphens kept
    pause_before: bool  # punctuation separates it from the previous word


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    # Ligatures that NFKD leaves alone.
    return stripped.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")


def _clean(text: str) -> str:
    return text.translate(_APOSTROPHES).translate(_DASHES)


def fold_word(word: str) -> str:
    return strip_accents(word).lower()


def fold(text: str) -> str:
    """'Ça ne marche pas, j’ai +33 6…' -> 'ca ne marche pas j ai plus 33 6'."""
    flat = strip_accents(_clean(text)).lower().replace("+", " plus ")
    return _NOT_ALNUM.sub(" ", flat).strip()


def words(text: str) -> list[Word]:
    text = _clean(text)
    out: list[Word] = []
    end = 0
    for m in _WORD.finditer(text):
        gap = text[end : m.start()]
        out.append(
            Word(
                text=m.group(),
                key="plus" if m.group() == "+" else fold_word(m.group()),
                pause_before=bool(out) and bool(_BREAK.search(gap)),
            )
        )
        end = m.end()
    return out


def title_name(text: str) -> str:
    """'pierre DUPONT' -> 'Pierre Dupont', 'jean-pierre' -> 'Jean-Pierre'; 'McEnroe' is kept."""

    def part(p: str) -> str:
        return p.capitalize() if p.islower() or p.isupper() else p

    return " ".join("-".join(part(p) for p in w.split("-")) for w in text.split())


# A letter said alone ("D"), or with the word that spells it ("D comme Denis"); not the elided
# "l'", "j'", "qu'" of ordinary speech.
_LETTER = r"(?<![\w'])[A-Za-z](?:\s+comme\s+[^\W\d_]+)?(?![\w'])"
_SPELLED = re.compile(rf"{_LETTER}(?:[\s,.;:/-]+{_LETTER})+")
_LAST_WORD = re.compile(r"([^\W\d_]+(?:-[^\W\d_]+)*)([\s,.;:/-]*)$")
_VOWELS = frozenset("aeiouy")
_SIMILAR = 0.7  # how close a spoken word must be to the spelling to be the same name


def join_spelled(text: str) -> str:
    """Names spelled letter by letter become one word: 'D U P O N T' -> 'DUPONT',
    'P comme Pierre, O comme Oscar, L comme Louis' -> 'POL'.

    The spelling stands for the word said just before it when they look alike ("Dupond,
    D U P O N T" -> "DUPONT": the letters are surer than the recogniser's guess of the
    word), else it follows it as the next word of the name ("Pierre, D U P O N T" ->
    "Pierre DUPONT"). Three letters at least, or two spelled with "comme", one of them a
    consonant: "il y a" is no spelling."""
    text = _clean(text)
    out: list[str] = []
    end = 0
    for m in _SPELLED.finditer(text):
        letters = re.findall(_LETTER, m.group())
        spelled = "".join(t[0] for t in letters).upper()
        with_comme = any(len(t) > 1 for t in letters)
        if len(letters) < (2 if with_comme else 3) or set(spelled.lower()) <= _VOWELS:
            continue
        before = text[end : m.start()]
        last = _LAST_WORD.search(before)
        if last and _looks_like(last.group(1), spelled):
            before = before[: last.start()]
        elif last:
            before = before[: last.start(2)] + " "  # no pause between the name's words
        out += [before, spelled]
        end = m.end()
    out.append(text[end:])
    return "".join(out)


def _looks_like(word: str, spelled: str) -> bool:
    a, b = fold_word(word), spelled.lower()
    return difflib.SequenceMatcher(None, a, b).ratio() >= _SIMILAR
