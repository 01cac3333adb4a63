"""French numbers for the harness: how callers say a phone number, and words -> digits for WER.

The harness keeps its own small French number reader rather than importing the bot's NLU: the
yardstick must not move when the code it measures changes.
"""

from __future__ import annotations

import re
import unicodedata

_UNITS = (
    "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "onze",
    "douze", "treize", "quatorze", "quinze", "seize",
)  # fmt: skip
_TENS = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}


def say_number(n: int) -> str:
    """0..99 in French words, hyphenated the usual way (71 'soixante et onze')."""
    if not 0 <= n <= 99:
        raise ValueError(f"0..99 only, got {n}")
    if n <= 16:
        return _UNITS[n]
    if n < 20:
        return f"dix-{_UNITS[n - 10]}"
    if n >= 80:
        rest = n - 80
        return "quatre-vingts" if rest == 0 else f"quatre-vingt-{say_number(rest)}"
    tens, unit = divmod(n, 10)
    if tens == 7:
        tens, unit = 6, unit + 10
    word = _TENS[tens]
    if unit == 0:
        return word
    if unit in (1, 11):
        return f"{word} et {_UNITS[unit]}"
    return f"{word}-{say_number(unit)}"


def say_pairs(number: str) -> str:
    """'0612345678' as most French callers say it: 'zéro six, douze, trente-quatre, …'."""
    digits = re.sub(r"\D", "", number)
    if len(digits) % 2:
        raise ValueError(f"an even number of digits, got {number!r}")
    pairs = [digits[i : i + 2] for i in range(0, len(digits), 2)]
    words = [f"zéro {_UNITS[int(p[1])]}" if p[0] == "0" else say_number(int(p)) for p in pairs]
    return ", ".join(words)


def say_digits(number: str) -> str:
    """Digit by digit: 'zéro, six, un, deux, …'."""
    return ", ".join(_UNITS[int(d)] for d in re.sub(r"\D", "", number))


# --- words -> digits, for comparing what was said with what was heard --------------------

_VALUES = {w.replace("é", "e"): i for i, w in enumerate(_UNITS)}
_VALUES["une"] = 1
_TEN_VALUES = {
    "vingt": 20, "vingts": 20, "trente": 30, "quarante": 40, "cinquante": 50, "soixante": 60,
    "septante": 70, "huitante": 80, "octante": 80, "nonante": 90,
}  # fmt: skip
_BOUNDARY = "|"


def fold(text: str) -> str:
    """Lower case, no accents, typographic apostrophes made plain."""
    text = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(c for c in text if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    """Words of `text` (folded), with `|` where punctuation separates groups ('six, douze')."""
    text = fold(text).replace("+", " plus ")
    text = re.sub(r"[,;:.!?…()\"«»]+", f" {_BOUNDARY} ", text)
    text = re.sub(r"['\-]", " ", text)
    return re.findall(rf"[a-z0-9]+|\{_BOUNDARY}", text)


def numbers_to_digits(words: list[str]) -> list[str]:
    """Runs of French number words become their values, and every number is then written as
    single digits, so '06 12' and 'zéro six, douze' both read '0 6 1 2'. Punctuation (`|`)
    ends a number: 'quatre, vingt-deux' is 4 then 22, not 82."""
    reader = _Reader()
    for i, w in enumerate(words):
        reader.read(w, words[i + 1] if i + 1 < len(words) else "")
    reader.flush()
    return reader.out


class _Reader:
    """Builds numbers word by word; a word that cannot extend the number starts a new one."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.cur: int | None = None
        self.last = ""

    def flush(self) -> None:
        if self.cur is not None:
            self.out.extend(str(self.cur))
        self.cur = None

    def start(self, value: int) -> None:
        self.flush()
        self.cur = value

    def read(self, w: str, nxt: str) -> None:
        cur = self.cur
        if w == "et" and cur is not None and cur % 10 == 0 and nxt in ("un", "une", "onze"):
            return  # vingt et un
        if w in _VALUES:
            self._unit(_VALUES[w])
        elif w in _TEN_VALUES:
            t = _TEN_VALUES[w]
            if t == 20 and self.last == "quatre" and cur is not None and cur % 100 == 4:
                self.cur = cur + 76  # quatre-vingt(s)
            elif cur is not None and cur >= 100 and cur % 100 == 0:
                self.cur = cur + t  # cent vingt
            else:
                self.start(t)
        elif w in ("cent", "cents"):
            if cur is not None and 1 <= cur <= 9:
                self.cur = cur * 100
            else:
                self.start(100)
        else:
            self.flush()
            if w.isdigit():
                self.out.extend(w)
            elif w != _BOUNDARY:
                self.out.append(w)
        self.last = w

    def _unit(self, u: int) -> None:
        cur = self.cur
        if cur is None:
            self.cur = u
        elif cur % 100 in (60, 80) and 10 <= u <= 16:
            self.cur = cur + u  # soixante-dix, quatre-vingt-onze
        elif cur % 100 >= 20 and cur % 10 == 0 and 1 <= u <= 9:
            self.cur = cur + u  # trente-quatre, soixante-dix-huit
        elif cur % 100 == 10 and self.last == "dix" and 7 <= u <= 9:
            self.cur = cur + u  # dix-sept
        elif cur >= 100 and cur % 100 == 0 and u <= 16:
            self.cur = cur + u  # cent deux
        else:
            self.start(u)
