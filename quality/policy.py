"""How a persona answers: the question the bot asked -> the persona's next line.

`classify` names the question from what the bot said (its phrase key, or the text it read out),
then from the dialog state, so new phrases others add still get a sensible answer. `choose` is
the persona's answer to it, pure. `ScriptedCaller` is the thin async shell the test caller asks
for its next step: it waits until the bot has finished asking, pauses like a person would, and
answers; it hangs up when its patience runs out.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from quality.numbers_fr import say_pairs
from quality.observer import CallView, Question
from quality.personas import Persona
from voicebot.caller import Caller, Step

QUESTION_OF_PHRASE = {
    "welcome": "problem",
    "ask_identity": "identity",
    "ask_phone": "phone",
    "ask_phone_dtmf": "phone_keypad",
    "ask_category": "category",
    "ask_category_dtmf": "category_keypad",
    "ask_verification": "verification",
    "ask_yes_no_dtmf": "verification_keypad",
    "no_input": "still_there",
    "no_input_last": "still_there",
}
QUESTION_OF_EXPECTING = {
    "problem": "problem",
    "identity": "identity",
    "phone": "phone",
    "category": "category",
    "yes_no": "verification",
    "ack": "solution",
}
QUESTION_OF_STATE = {
    "WELCOME": "problem",
    "IDENTIFICATION": "identity",
    "DIAGNOSTIC": "category",
    "SOLUTION": "solution",
    "VERIFICATION": "verification",
}
AGAIN = "again"  # "pardon, pouvez-vous répéter ?": the previous question, once more
GIVE_UP = "Bon, laissez tomber, je rappellerai plus tard. Au revoir."


def classify(q: Question) -> str:
    """The kind of question `q` asks (see personas.py for the kinds)."""
    if q.phrase == "repeat":
        return AGAIN
    if q.phrase in QUESTION_OF_PHRASE:
        return QUESTION_OF_PHRASE[q.phrase]
    if q.confirming_phone:
        return "confirm_phone"
    if q.expecting in QUESTION_OF_EXPECTING:
        return QUESTION_OF_EXPECTING[q.expecting]
    return QUESTION_OF_STATE.get(q.state, "unknown")


@dataclass
class Memory:
    """What the caller keeps track of during its call."""

    asked: Counter[str] = field(default_factory=Counter)  # kind -> times answered
    fixes: int = 0  # fixes the bot proposed so far
    fix_text: str = ""  # the latest one's words: the same words again are not a new fix
    fix_again: int = 0  # times the latest fix was said again (asked slower): answer on
    last_kind: str = "problem"
    last_answer: str = ""


def _same_number(read_back: str, number: str) -> bool:
    heard, meant = re.sub(r"\D", "", read_back), re.sub(r"\D", "", number)
    return len(heard) >= 9 and heard[-9:] == meant[-9:]


def choose(p: Persona, kind: str, prompt: str, m: Memory) -> tuple[str, str]:
    """(the kind actually answered, the answer) for the question of `kind`; updates `m`."""
    if kind == AGAIN:
        kind = m.last_kind
    elif kind == "solution" and prompt != m.fix_text:
        m.fixes, m.fix_text, m.fix_again = m.fixes + 1, prompt, 0
    elif kind == "solution":
        m.fix_again += 1  # "plus lentement ?" was answered: the caller goes on, not asks again
    n = m.asked[kind]
    own = p.answer(kind, n)
    works = p.fix_works_at > 0 and m.fixes >= p.fix_works_at
    match kind:
        case "solution":
            answer = p.answer("solution", max(m.fixes - 1, 0) + m.fix_again) or "D'accord."
        case _ if own is not None:
            answer = own
        case "verification":
            forms = p.yes if works else p.no
            answer = forms[n % len(forms)]
        case "verification_keypad":
            answer = "dtmf:1" if works else "dtmf:2"
        case "confirm_phone" if p.phone is not None:
            if _same_number(prompt, p.phone):
                answer = p.yes[0]
            else:  # the number again, as this caller says it ("plus trente-deux, …")
                again = (p.answer("phone", 0) or say_pairs(p.phone)).rstrip(".")
                answer = f"Non, c'est le {again[:1].lower()}{again[1:]}."
        case "phone" if p.phone is not None:
            answer = f"{say_pairs(p.phone)}."
        case "phone_keypad" if p.phone is not None:
            answer = f"dtmf:{p.phone}#"  # as asked: the number, then "#"
        case "phone_keypad":
            answer = p.answer("phone", n) or "Je ne connais pas mon numéro."
        case "category" if p.category is not None:
            answer = f"{p.category.capitalize()}."
        case "category_keypad" if p.category is not None:
            answer = "dtmf:1" if p.category == "internet" else "dtmf:2"
        case "category_keypad":
            answer = p.answer("category", n) or "Je ne sais pas."
        case "still_there":
            answer = "Oui, je suis là."
        case _:
            answer = m.last_answer or "Pardon ?"
    m.asked[kind] += 1
    m.last_kind, m.last_answer = kind, answer
    return kind, answer


def steps_of(answer: str, tag: str) -> list[Step]:
    """An answer ('line', 'dtmf:1', 'hangup', 'a|b') as caller steps tagged with its kind."""
    out = []
    for part in (a.strip() for a in answer.split("|")):
        if part == "hangup":
            out.append(Step("hangup", tag=tag))
        elif part.startswith("dtmf:"):
            out.append(Step("dtmf", part.removeprefix("dtmf:"), tag=tag))
        else:
            out.append(Step("say", part, tag=tag))
    return out


@dataclass
class ScriptedCaller:
    """A persona on the phone: a `StepSource` for `voicebot.caller.Caller`."""

    persona: Persona
    view: CallView
    rng: random.Random
    max_lines: int = 14  # patience: then the caller gives up and hangs up
    max_call_s: float = 240.0
    question_timeout_s: float = 15.0  # how long a caller waits for the bot to ask something
    caller: Caller | None = None
    memory: Memory = field(default_factory=Memory)
    gave_up: bool = False
    stale_questions: int = 0  # times the bot asked nothing new within question_timeout_s
    _pending: list[Step] = field(default_factory=list)
    _answered: str | None = None
    _lines: int = 0
    _t0: float = field(default_factory=time.monotonic)

    async def next_step(self) -> Step | None:
        assert self.caller is not None
        if self._pending:
            return self._take()
        if self.caller.closed or self.view.ending:  # the goodbye is not a question to answer
            return None
        if self._lines >= self.max_lines or time.monotonic() - self._t0 > self.max_call_s:
            self.gave_up = True
            self._pending = steps_of(f"{GIVE_UP}|hangup", "give_up")
            return self._take()
        q = await self.view.wait_question(self._answered, self.question_timeout_s)
        if q == "ending" or self.caller.closed:
            return None
        if isinstance(q, str):  # nothing new was asked: a person would check the line
            self.stale_questions += 1
            self._pending = steps_of("Allô ? Vous êtes là ?", "stale")
            return self._take()
        self._answered = q.utterance_id
        kind, answer = choose(self.persona, classify(q), q.text or "", self.memory)
        if answer == "silent":
            await self.view.wait_ended(self.max_call_s)
            return None
        # A person answers a beat after the question ends, not at once, nor after a while.
        pause = q.finished_at + self.rng.uniform(0.35, 0.8) - time.monotonic()
        await asyncio.sleep(max(0.0, pause))
        self._pending = steps_of(answer, kind)
        return self._take()

    def _take(self) -> Step:
        step = self._pending.pop(0)
        if step.verb in ("say", "dtmf"):
            self._lines += 1
        return step
