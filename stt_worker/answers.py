"""What the caller may answer to what the bot asked, for the recogniser (pure, no I/O).

The brain publishes `decision.expecting` (brain/dialog.py EXPECTING): "problem" (WELCOME),
"identity", "category", "ack", "yes_no", "phone" or None. Here:

- `CHOICES`: for the closed questions, each answer's usual phrasings. The offline recogniser
  scores them against the audio when its free decoding heard none of the known answers
  ("Internet." heard as "A peu hônet.").
- `meanings(text)`: the known answers a text contains (keywords, any question), so a free
  decoding that already says something meaningful is kept as it is.
- `turn_complete(text, expecting)`: whether a speculative transcript reads as the end of the
  caller's turn (see stt_worker/turn.py), or as a line still being said.
- `keyterms(expecting)`: the vocabulary worth boosting in a cloud recogniser.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

CHOICES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "yes_no": {
        # Not "D'accord.": unclear short answers of either kind ("Toujours pas.", "Négatif.",
        # "Absolument.") came out as "D'accord." (bench/stt_closed.py), a no turned into a yes
        # that only the trust floor stopped. A clear "d'accord" is heard by the free decoding.
        "oui": (
            "Oui.", "Oui, ça marche.", "Oui, merci.", "Tout à fait.", "Ouais.", "C'est bien ça.",
        ),
        # Without the "no" callers say most after "non" itself, a lone "Pas du tout." was
        # scored against the "yes" phrasings only, and could come out as a yes. Each
        # phrasing costs scoring time: "toujours pas" is a known answer when the free decoding
        # hears it (`meanings`).
        "non": (
            "Non.", "Non, toujours pas.", "Non, ça ne marche pas.", "Non, merci.", "Pas du tout.",
        ),
    },
    "category": {
        "internet": (
            "Internet.", "C'est internet.", "La box internet.", "C'est la box.", "Le wifi.",
        ),
        "mobile": ("Mobile.", "Le mobile.", "C'est le mobile.", "Mon portable."),
    },
}  # fmt: skip

# Keywords of each answer (accents stripped, lower case), whatever the question.
_KEYWORDS: Final[dict[str, frozenset[str]]] = {
    "oui": frozenset({"oui", "ouais", "d'accord", "ok", "okay", "exact", "exactement", "voila"}),
    "non": frozenset({"non", "nan"}),
    "internet": frozenset({"internet", "box", "wifi", "wi-fi", "fibre", "adsl", "connexion"}),
    "mobile": frozenset({"mobile", "portable", "4g", "5g", "reseau", "sms", "telephone"}),
    "agent": frozenset({"conseiller", "conseillere", "technicien", "humain", "quelqu'un"}),
    "repeat": frozenset({"pardon", "repeter", "repetez", "comment"}),
    "goodbye": frozenset({"revoir", "merci"}),
}

_FILLERS: Final = frozenset(
    {"euh", "heu", "hum", "hmm", "hm", "mmh", "mm", "ben", "bah", "bon", "alors", "ah", "oh", "eh"}
)
# A line that stops on one of these is not finished ("mon numéro est le", "c'est pour").
_DANGLING: Final = frozenset(
    [
        "et",
        "de",
        "du",
        "des",
        "le",
        "la",
        "les",
        "l",
        "un",
        "une",
        "mon",
        "ma",
        "mes",
        "son",
        "sa",
        "est",
        "c",
        "à",
        "a",
        "au",
        "aux",
        "pour",
        "avec",
        "que",
        "qu",
        "qui",
        "mais",
        "ou",
        "sur",
        "en",
        "dans",
        "par",
        "je",
        "j",
        "il",
        "elle",
        "on",
        "vous",
        "nous",
        "numero",
    ]
)
_NUMBER_WORDS: Final = frozenset(
    [
        "zero",
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
        "vingt",
        "trente",
        "quarante",
        "cinquante",
        "soixante",
        "cent",
    ]
)
PHONE_DIGITS: Final = 10


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """Lower-case, accent-free words; elisions split ("c'est" -> "c", "est")."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", _fold(text).replace("'", " "))


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


_PHRASES: Final = (
    ("non", re.compile(r"\b(toujours|marche|fonctionne|pas du tout) pas\b|\bpas du tout\b")),
    (
        "oui",
        re.compile(r"\bca (re)?marche\b|\bca fonctionne\b|\bc'est (bon|bien ca)\b|\btout a fait\b"),
    ),
)


def meanings(text: str) -> set[str]:
    folded = _fold(text)
    tokens = set(re.findall(r"[a-z0-9']+(?:-[a-z0-9]+)*", folded)) | set(words(text))
    found = {meaning for meaning, keys in _KEYWORDS.items() if tokens & keys}
    for meaning, pattern in _PHRASES:
        if pattern.search(folded):
            found.add(meaning)
    if "non" in found:
        found.discard("oui")  # "ça ne marche pas" says "marche" too
    return found


def _number_pending(ws: list[str], text: str) -> bool:
    """A phone number is being read and is not whole yet."""
    said = len(digits(text)) + sum(w in _NUMBER_WORDS for w in ws)
    return said > 0 and len(digits(text)) < PHONE_DIGITS


# A run of this many digits from the prompt's example number is the prompt, not the caller.
ECHO_DIGITS: Final = 6


def is_phone_number(text: str, prompt: str = "") -> bool:
    """The text holds one French number written in digits (ten of them, the first a 0), not
    the recogniser's prompt repeating its example number (Whisper does, on unclear audio)."""
    found = digits(text)
    if len(found) != PHONE_DIGITS or not found.startswith("0"):
        return False
    example = digits(prompt)
    runs = {example[i : i + ECHO_DIGITS] for i in range(len(example) - ECHO_DIGITS + 1)}
    return not any(run in found for run in runs)


def number_prefix(free: str, expecting: str | None, prompt: str = "") -> str | None:
    """What a second decoding of a caller's number is forced to begin with, before its "0"
    (see whisper_local.recognise), or None when the free decoding needs no second one.

    Asked for a number, the caller starts with it: nothing comes before. Asked for name and
    number, the free decoding's words before its first digit are the name, kept as heard;
    a free decoding without digits is taken to be a name alone."""
    if expecting not in ("phone", "identity") or is_phone_number(free, prompt):
        return None
    if expecting == "phone":
        return ""
    first = re.search(r"\d", free)
    return free[: first.start()].strip() if first else None


def is_counting(text: str) -> bool:
    """Only numbers, and the first three count up by one ("1, 2, 3, 4, 7, 8", "2 3 4 5 6"):
    what Whisper writes when it hears no words it knows. A caller's number rarely starts so
    (and decoded again, one that does is heard again)."""
    numbers = re.findall(r"\d+", text)
    if len(numbers) < 3 or re.sub(r"[\d\s.,;:!?…-]|\bet\b", "", text):
        return False
    first = [int(n) for n in numbers[:3]]
    return all(len(n) == 1 for n in numbers[:3]) and first == list(range(first[0], first[0] + 3))


def is_filler(text: str) -> bool:
    """Nothing but "euh", "hum", "ben"... (or nothing at all)."""
    return all(w in _FILLERS for w in words(text))


def turn_complete(text: str, expecting: str | None) -> bool:
    ws = words(text)
    if is_filler(text):
        return False  # "euh", "hum": the answer is still to come
    if ws[-1] in _DANGLING:
        return False
    found = meanings(text)
    match expecting:
        case "yes_no" | "category":
            return bool(found & (set(CHOICES[expecting]) | {"agent", "repeat"}))
        case "problem":
            return bool(found & {"internet", "mobile", "agent", "repeat"})
        case "identity" | "phone":
            # A name alone or half a number: the rest usually follows after a breath.
            return len(digits(text)) >= PHONE_DIGITS or bool(found & {"agent", "repeat", "non"})
    return not _number_pending(ws, text)


def keyterms(expecting: str | None) -> list[str]:
    """Words a cloud recogniser should favour now (Deepgram nova-3 `keyterm`)."""
    base = ["internet", "mobile", "box", "wifi", "fibre", "4G", "SAV"]
    match expecting:
        case "yes_no":
            return ["oui", "non", "d'accord", "toujours pas", *base]
        case "phone" | "identity":
            return ["zéro", "six", "sept", "numéro", *base]
    return base
