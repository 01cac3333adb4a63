"""The harness's figures, as pure functions of what one call left behind.

Inputs are the caller's side (its lines and the bot's voiced stretches, `voicebot.caller`) and
the bot's side read back from the CALLS stream (says, finals, decisions). Definitions:

- success: the call ended as the persona's script says it should (outcome, category, customer);
- WER: word error rate of what the bot heard (the `final` transcripts whose audio is the
  line's) against what the script said, after folding case and accents,
  dropping hesitations ("euh") and writing every number as digits on both sides;
- repeat prompts: bot says that ask again: "pardon, pouvez-vous répéter", "êtes-vous toujours en
  ligne", the no-input warning, or the same words as the bot's previous say ("un instant" aside);
- a prompt repeated more than twice in a row: three identical consecutive says ("un instant" aside);
- `no_input` while talking: the call ended with outcome `no_input` although the caller spoke
  after the no-input countdown that ended it had started (or during its first silence).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quality.numbers_fr import numbers_to_digits, tokens

FILLERS = frozenset({"euh", "heu", "hum", "hmm", "mmh", "bah", "ben"})
HOLD = "hold"  # "Un instant, s'il vous plaît": not a prompt, never counted as one
REPROMPTS = frozenset({"repeat", "no_input", "no_input_last"})


# Spellings of one word that differ only in writing (a hyphen splits "Wi-Fi" in two).
_SAME = {"okay": "ok", "wi fi": "wifi", "e mail": "email"}


def wer_words(text: str) -> list[str]:
    words = " ".join(w for w in numbers_to_digits(tokens(text)) if w not in FILLERS)
    for variant, canonical in _SAME.items():
        words = f" {words} ".replace(f" {variant} ", f" {canonical} ").strip()
    return words.split()


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Substitutions + deletions + insertions turning `ref` into `hyp` (Levenshtein on words)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


@dataclass(frozen=True)
class WordErrors:
    edits: int
    ref_words: int

    @property
    def rate(self) -> float | None:
        return self.edits / self.ref_words if self.ref_words else None


def word_errors(said: str, heard: str) -> WordErrors:
    ref, hyp = wer_words(said), wer_words(heard)
    return WordErrors(edit_distance(ref, hyp), len(ref))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Heard:
    """A final transcript on the call's clock (seconds since the caller connected): when it was
    published, and the stretch of call audio it covers (the edge counts call audio from the
    caller's first frame, which the caller sends as it connects)."""

    ts: float
    start: float
    end: float
    text: str


def heard_per_line(
    lines: Sequence[tuple[float, float]], finals: Iterable[Heard]
) -> tuple[list[str], int]:
    """What the bot heard of each line (start, end): the finals whose audio overlaps it most.
    A final with no audio times (a provider that gives none) goes to the latest line that
    started before it was published. Also returns how many finals covered no line at all:
    words "heard" while the caller was silent (noise)."""
    heard: list[list[str]] = [[] for _ in lines]
    phantom = 0
    for f in finals:
        if not f.text.strip():
            continue
        if f.end > 0:
            overlaps = [min(f.end, b) - max(f.start, a) for a, b in lines]
            best = max(range(len(lines)), key=overlaps.__getitem__, default=-1)
            idx = best if best >= 0 and overlaps[best] > 0 else -1
        else:
            idx = sum(1 for a, _ in lines if a <= f.ts) - 1
        if idx < 0:
            phantom += 1
        else:
            heard[idx].append(f.text.strip())
    return [" ".join(h) for h in heard], phantom


def say_key(phrase: str | None, text: str | None) -> str:
    """A say as one comparable value: its phrase key, or its words."""
    return phrase if phrase is not None else f"text:{text or ''}"


def repeat_prompts(keys: Sequence[str]) -> int:
    """How many says asked again (definition at the top)."""
    prompts = [k for k in keys if k != HOLD]
    return sum(
        1 for i, k in enumerate(prompts) if k in REPROMPTS or (i > 0 and k == prompts[i - 1])
    )


def longest_run(keys: Sequence[str]) -> tuple[int, str | None]:
    """The longest run of identical consecutive says ("un instant" aside) and what it said."""
    best, best_key, run, prev = 0, None, 0, None
    for k in keys:
        if k == HOLD:
            continue
        run = run + 1 if k == prev else 1
        prev = k
        if run > best:
            best, best_key = run, k
    return best, best_key


@dataclass(frozen=True)
class DecisionMark:
    ts: float  # wall clock
    trigger: str
    actions: tuple[str, ...]


def no_input_while_talking(
    outcome: str | None,
    decisions: Sequence[DecisionMark],
    speech_ends: Sequence[float],
    default_no_input_s: float = 8.0,
) -> bool:
    """Did a `no_input` ending come while the caller was talking? `speech_ends` are the wall
    times the caller's spoken lines ended. The countdown that ended the call is the trailing
    run of `timer:no_input` decisions (since the last transcript or key press); the caller
    'was talking' if a line of theirs ended after its first silence began."""
    if outcome != "no_input":
        return False
    no_input_s = default_no_input_s
    for d in decisions:
        for a in d.actions:
            if a.startswith("timer:no_input:"):
                no_input_s = float(a.rsplit(":", 1)[1])
    first_timer: float | None = None
    for d in reversed(decisions):
        if d.trigger in ("transcript", "dtmf"):
            break
        if d.trigger == "timer:no_input":
            first_timer = d.ts
    if first_timer is None:
        return False
    silence_began = first_timer - no_input_s
    return any(end > silence_began for end in speech_ends)


@dataclass(frozen=True, kw_only=True)
class Expect:
    """How a persona's call must end. `category`/`customer`: None means not judged;
    `customer=""` means the caller must stay unidentified."""

    outcomes: frozenset[str]
    category: str | None = None
    customer: str | None = None

    def describe(self) -> str:
        parts = ["|".join(sorted(self.outcomes))]
        if self.category is not None:
            parts.append(self.category)
        if self.customer is not None:
            parts.append(self.customer or "unidentified")
        return ", ".join(parts)


def judge(
    expect: Expect, outcome: str | None, category: str | None, customer: str | None
) -> list[str]:
    """Why the call did not end as expected; an empty list is a success."""
    why = []
    if outcome not in expect.outcomes:
        why.append(f"outcome {outcome or 'none'} (expected {'|'.join(sorted(expect.outcomes))})")
    if expect.category is not None and category != expect.category:
        why.append(f"category {category or 'none'} (expected {expect.category})")
    if expect.customer is not None and (customer or "") != expect.customer:
        want = expect.customer or "unidentified"
        why.append(f"customer {customer or 'unidentified'} (expected {want})")
    return why
