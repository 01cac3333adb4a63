"""The dialog of a call, extracted from its events, and a readable diff of two dialogs.

Pure: no I/O. A dialog is what a person judging the bot cares about: the states it went
through, what the caller said and how it was understood (intent, slots), what the bot said,
how the call ended. Bookkeeping decisions (a playback finished, a timer armed) are left out,
because their number and order depend on timing, not on the dialog rules.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from events import schemas
from events.phrases import PHRASES

# Ticket numbers come from a database sequence: the same dialog gets another number on replay.
_TICKET_NUMBER = re.compile(r"(ticket numéro )\d+")
_SPOKEN: frozenset[str] = frozenset({"say", "say_text", "end", "open_ticket", "find_technician"})


def normalise(text: str) -> str:
    """Mask what legitimately changes between runs of the same dialog (ticket numbers)."""
    return _TICKET_NUMBER.sub(r"\1<n>", text)


@dataclass(frozen=True)
class Turn:
    """One decision that changed something a caller would notice."""

    trigger: str  # transcript | dtmf | started | timer:no_input | stt_provider_error | ...
    state_from: str
    state_to: str
    text: str | None = None  # what the caller said (or "DTMF 1")
    intent: str | None = None
    slots: tuple[tuple[str, str], ...] = ()
    actions: tuple[str, ...] = ()  # say:<key> | say_text:<text> | end:<how> | open_ticket:...

    def line(self) -> str:
        parts = [f"[{self.trigger}] {self.state_from} -> {self.state_to}"]
        if self.text is not None:
            parts.append(f"heard {self.text!r}")
        if self.intent is not None:
            parts.append(f"intent={self.intent}")
        if self.slots:
            parts.append("slots={" + ", ".join(f"{k}={v}" for k, v in self.slots) + "}")
        if self.actions:
            parts.append("=> " + ", ".join(self.actions))
        return "  ".join(parts)


@dataclass(frozen=True)
class Dialog:
    call_id: str
    states: tuple[str, ...]  # the state path, consecutive repeats collapsed
    turns: tuple[Turn, ...]
    phrases: tuple[str, ...]  # what the bot said, in order: phrase keys or texts
    outcome: str | None  # solved | transfer | ticket | abandoned | no_input | ...
    ending: str | None  # the control that ended the call: hangup | transfer:<target>

    @property
    def intents(self) -> tuple[str, ...]:
        return tuple(t.intent for t in self.turns if t.intent is not None)

    @property
    def slots(self) -> tuple[tuple[str, str], ...]:
        return tuple(s for t in self.turns for s in t.slots)

    def lines(self) -> list[str]:
        """The dialog as text, one fact a line: what the diff compares."""
        out = [
            f"outcome: {self.outcome}",
            f"ending: {self.ending}",
            "states: " + " > ".join(self.states),
        ]
        out += [f"turn: {t.line()}" for t in self.turns]
        out += [f"bot: {p}" for p in self.phrases]
        return out


def extract(events: Iterable[object]) -> Dialog:
    """The dialog of one call from its CALLS events (decoded structs), in stream order."""
    call_id = ""
    states: list[str] = []
    turns: list[Turn] = []
    phrases: list[str] = []
    outcome: str | None = None
    ending: str | None = None
    for event in events:
        match event:
            case schemas.Decision() as d:
                call_id = call_id or d.call_id
                outcome = d.snapshot.get("outcome", outcome)
                for state in (d.state_from, d.state_to):
                    if state != "INIT" and (not states or states[-1] != state):
                        states.append(state)
                turn = _turn(d)
                if turn is not None:
                    turns.append(turn)
            case schemas.Say() as s:
                call_id = call_id or s.call_id
                phrases.append(s.phrase if s.phrase is not None else normalise(s.text or ""))
            case schemas.Transfer(target=target):
                ending = f"transfer:{target}"
            case schemas.HangupCall():
                ending = "hangup"
            case schemas.Base(call_id=cid):
                call_id = call_id or cid
    return Dialog(call_id, tuple(states), tuple(turns), tuple(phrases), outcome, ending)


def _turn(d: schemas.Decision) -> Turn | None:
    actions = tuple(normalise(a) for a in d.actions if a.partition(":")[0] in _SPOKEN)
    if d.text is None and d.state_from == d.state_to and not actions:
        return None  # bookkeeping: timers, flushes, playback progress
    return Turn(
        trigger=d.trigger,
        state_from=d.state_from,
        state_to=d.state_to,
        text=d.text,
        intent=d.intent,
        slots=tuple(sorted(d.slots.items())),
        actions=actions,
    )


def summary(a: Dialog, b: Dialog) -> list[str]:
    """One line per aspect that differs: state path, intents, slots, phrases, outcome."""
    out: list[str] = []
    aspects: list[tuple[str, object, object]] = [
        ("state path", " > ".join(a.states), " > ".join(b.states)),
        ("intents", " ".join(a.intents), " ".join(b.intents)),
        ("slots", _slots(a.slots), _slots(b.slots)),
        ("phrases", " | ".join(a.phrases), " | ".join(b.phrases)),
        ("outcome", a.outcome, b.outcome),
        ("ending", a.ending, b.ending),
    ]
    for name, x, y in aspects:
        if x != y:
            out.append(f"{name} differs:\n    original: {x}\n    replay:   {y}")
    return out


def _slots(slots: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in slots)


def diff(original: Dialog, replay: Dialog) -> list[str]:
    """Empty when both dialogs are the same; else a summary then a unified diff of the lines."""
    if original.lines() == replay.lines():
        return []
    body = difflib.unified_diff(
        original.lines(),
        replay.lines(),
        fromfile=f"original {original.call_id}",
        tofile=f"replay {replay.call_id}",
        lineterm="",
    )
    return [*summary(original, replay), *body]


def phrase_text(say: schemas.Say) -> str:
    """What the bot says, in words: the cached phrase's text or the dynamic text."""
    if say.phrase is not None:
        return PHRASES.get(say.phrase, say.phrase)
    return say.text or ""
