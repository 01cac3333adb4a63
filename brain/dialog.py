"""The SAV dialog as a pure state machine: `step(state, input) -> (state, actions)`.

No I/O and no clock: the shell (worker.py) feeds inputs (call start, what the caller said with
its NLU reading, DTMF, playback progress, timers, results of database look-ups) and carries out
the actions (say, timers, tickets, hang-up, transfer). A call's state is therefore a pure
function of its inputs, which is what makes takeover and replay possible.

WELCOME -> IDENTIFICATION -> DIAGNOSTIC -> SOLUTION -> VERIFICATION -> GOODBYE | TRANSFER
(TICKET when no technician can take the call; CLOSED once the call is over.)

No dead ends: a caller who is not understood is asked to repeat once, then each state has its
way forward (move on, the keypad, the next question), and when that fails too a person takes
over (a technician, or a ticket when none is free). The bot never says the same prompt three
times in a row, and a caller who speaks is never treated as silent: speech that yields no words
counts as a misunderstanding, not as silence, so no call ends in `no_input` while the caller
was talking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import msgspec

from brain.phone import caller_id, spoken
from brain.solutions import Catalog, Problem

State = Literal[
    "INIT",
    "WELCOME",
    "IDENTIFICATION",
    "DIAGNOSTIC",
    "SOLUTION",
    "VERIFICATION",
    "TICKET",
    "GOODBYE",
    "TRANSFER",
    "CLOSED",
]

# What each state waits for: the closed-choice hint given to the NLU (see `expecting`).
EXPECTING: dict[str, str | None] = {
    "WELCOME": "problem",
    "IDENTIFICATION": "identity",
    "DIAGNOSTIC": "category",
    "SOLUTION": "ack",
    "VERIFICATION": "yes_no",
}
# States with a keypad fallback once speech has failed, and its prompt.
KEYPAD: dict[str, str] = {
    "IDENTIFICATION": "ask_phone_dtmf",
    "DIAGNOSTIC": "ask_category_dtmf",
    "VERIFICATION": "ask_yes_no_dtmf",
}
SLOWER = 0.8  # speaking rate of a prompt said again, and of all prompts once the caller asked
# What an out-of-scope request is about, in the words of the ticket summary.
TOPIC_LABELS: dict[str, str] = {
    "billing": "facturation",
    "contract": "contrat ou offre",
    "moving": "déménagement",
    "cancellation": "résiliation",
    "order": "commande ou livraison",
    "theft": "perte ou vol",
}


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Tunables of the dialog; part of the decision's inputs, so replay uses the same."""

    no_input_s: float = 8.0
    wait_s: float = 30.0  # the silence a caller who asked for time may take ("attendez")
    max_no_input: int = 3  # re-prompt, last prompt, then hang up
    max_misunderstood: int = 2  # after this many, offer DTMF
    max_call_s: float = 600.0
    end_guard_s: float = 15.0  # hang up anyway if the goodbye's playback is never reported
    max_utterance_s: float = 15.0  # longest a caller's turn may take to become a transcript


class Snapshot(msgspec.Struct, kw_only=True, frozen=True):
    """Everything the dialog remembers about a call; published with each decision."""

    state: str = "INIT"
    turn: int = 0
    utterances: int = 0  # counter for utterance ids
    caller_number: str | None = None
    name: str | None = None
    phone: str | None = None
    customer_id: int | None = None
    customer_name: str | None = None
    category: str | None = None
    problem: str | None = None  # Problem.key
    step: int = 0  # index of the solution step being tried
    tried: tuple[str, ...] = ()  # solution steps said to the caller, for the ticket summary
    identity_attempts: int = 0
    misunderstood: int = 0
    no_input: int = 0
    dtmf_mode: bool = False
    dtmf_buffer: str = ""
    last_prompt: str | None = None  # phrase key or text, replayed on "répétez"
    last_prompt_is_text: bool = False
    awaiting: str | None = None  # utterance id whose end starts the no-input timer
    playing: tuple[str, ...] = ()  # utterance ids the edge is playing
    uninterruptible: tuple[str, ...] = ()
    ending: str | None = None  # hangup | transfer:<target> once decided
    ending_after: str | None = None  # utterance id that must finish first
    outcome: str | None = None  # solved | transfer | ticket | abandoned | no_input | max_length
    ticket_pending: bool = False
    ticket: str | None = None
    technician_pending: bool = False
    confirming_phone: bool = False  # a number no customer has was read back: yes or no?
    candidate_id: int | None = None  # the customer of the number read back, if one is close
    candidate_name: str | None = None
    speech_unheard: bool = False  # the caller started speaking; no words came of it yet
    slow: bool = False  # the caller asked the bot to speak slower (or louder): every say slower
    waiting: bool = False  # the caller asked for time; the bot has said nothing since
    said_last: str | None = None  # phrase key or text of the last thing said
    said_run: int = 0  # how many times in a row `said_last` was said
    topic: str | None = None  # what an out-of-scope request is about (billing, contract, ...)


def expecting(s: Snapshot) -> str | None:
    """What the dialog waits for now, as a hint for the NLU's closed-choice matching."""
    return "yes_no" if s.confirming_phone else EXPECTING.get(s.state)


# --- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    id: int
    name: str
    phone: str


@dataclass(frozen=True)
class CallStarted:
    caller: str | None = None
    customer: Customer | None = None  # looked up from the registered caller number


@dataclass(frozen=True)
class Heard:
    """A caller's utterance with its NLU reading (and a look-up, when it gave a phone)."""

    text: str
    intent: str
    slots: dict[str, str] = field(default_factory=dict)
    confident: bool = True
    customer: Customer | None = None
    looked_up: bool = False
    # No customer has the number as heard, but this one's differs by a digit or two: read
    # back, the caller confirms it (speech recognition gets digits wrong).
    near: Customer | None = None


@dataclass(frozen=True)
class CustomerResult:
    """The answer to `FindCustomer` (a number typed on the keypad)."""

    customer: Customer | None


@dataclass(frozen=True)
class CallerKnown:
    """The registered caller number's look-up, which arrives after the welcome (a database
    look-up must never delay the first words)."""

    customer: Customer


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class SpeechStarted:
    pass


@dataclass(frozen=True)
class PlaybackStarted:
    utterance_id: str


@dataclass(frozen=True)
class PlaybackEnded:
    utterance_id: str
    interrupted: bool = False


@dataclass(frozen=True)
class Timeout:
    name: Literal["no_input", "max_length", "end_guard"]


@dataclass(frozen=True)
class TechnicianResult:
    available: bool
    target: str = "technicians"


@dataclass(frozen=True)
class TicketOpened:
    number: str | None  # None: recorded, but the database could not give a number yet


@dataclass(frozen=True)
class CallerHungUp:
    pass


@dataclass(frozen=True)
class Resume:
    """Another instance takes the call over: re-arm what a crash may have lost."""

    elapsed_s: float = 0.0  # how long the call has lasted (for its length limit)


@dataclass(frozen=True)
class ProviderTrouble:
    """A provider is slow or failed (`timeout`: hold phrase) or audio was lost (`gap`: the
    caller is asked to repeat)."""

    kind: Literal["timeout", "gap"]


Input = (
    CallStarted
    | Heard
    | CustomerResult
    | CallerKnown
    | Dtmf
    | SpeechStarted
    | PlaybackStarted
    | PlaybackEnded
    | Timeout
    | TechnicianResult
    | TicketOpened
    | CallerHungUp
    | Resume
    | ProviderTrouble
)

# --- actions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    utterance_id: str
    phrase: str | None = None
    text: str | None = None
    interruptible: bool = True
    speed: float = 1.0  # speaking rate factor: SLOWER for a prompt said again


@dataclass(frozen=True)
class StartTimer:
    name: Literal["no_input", "max_length", "end_guard"]
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    name: Literal["no_input", "max_length", "end_guard"]


@dataclass(frozen=True)
class Flush:
    utterance_id: str


@dataclass(frozen=True)
class FindCustomer:
    phone: str


@dataclass(frozen=True)
class FindTechnician:
    category: str | None


@dataclass(frozen=True)
class OpenTicket:
    category: str | None
    summary: str
    status: str  # open | transferred


@dataclass(frozen=True)
class EndCall:
    how: str  # hangup | transfer:<target>
    reason: str


@dataclass(frozen=True)
class RecordOutcome:
    outcome: str


Action = (
    Say
    | StartTimer
    | CancelTimer
    | Flush
    | FindCustomer
    | FindTechnician
    | OpenTicket
    | EndCall
    | RecordOutcome
)


def describe(action: Action) -> str:
    """A one-line name for decision events and replay diffs."""
    match action:
        case Say(phrase=str(p), speed=speed):
            return f"say:{p}{_rate(speed)}"
        case Say(text=t, speed=speed):
            return f"say_text:{t}{_rate(speed)}"
        case StartTimer(name=n, seconds=s):
            return f"timer:{n}:{s:g}"
        case CancelTimer(name=n):
            return f"cancel:{n}"
        case Flush(utterance_id=u):
            return f"flush:{u}"
        case FindCustomer():
            return "find_customer"
        case FindTechnician(category=c):
            return f"find_technician:{c}"
        case OpenTicket(status=s):
            return f"open_ticket:{s}"
        case EndCall(how=h):
            return f"end:{h}"
        case RecordOutcome(outcome=o):
            return f"outcome:{o}"
    raise AssertionError(action)


def _rate(speed: float) -> str:
    return "" if speed == 1.0 else f"@{speed:g}"


# --- the machine ----------------------------------------------------------------------


class Dialog:
    """Holds the policy and the solution catalogue; `step` is pure given those."""

    def __init__(self, catalog: Catalog, policy: Policy | None = None) -> None:
        self.catalog = catalog
        self.policy = policy or Policy()

    def step(self, s: Snapshot, event: Input) -> tuple[Snapshot, list[Action]]:
        out: list[Action] = []
        if s.state == "CLOSED":
            return s, out
        match event:
            case CallStarted():
                s = self._start(s, event, out)
            case PlaybackStarted(utterance_id=u):
                s = msgspec.structs.replace(s, playing=(*s.playing, u))
            case PlaybackEnded():
                s = self._playback_ended(s, event, out)
            case SpeechStarted():
                s = self._barge_in(s, out)
            case CallerHungUp():
                s = self._caller_hung_up(s, out)
            case Timeout(name="max_length"):
                s = self._max_length(s, out)
            case Timeout(name="end_guard"):
                s = self._finish(s, out)
            case Timeout(name="no_input") if not self._wrapping_up(s):
                # Speech that never became words is a misunderstanding, not silence.
                s = self._misunderstood(s, out) if s.speech_unheard else self._no_input(s, out)
            case TechnicianResult():
                s = self._technician(s, event, out)
            case TicketOpened(number=n):
                s = self._ticket_opened(s, n, out)
            case CallerKnown(customer=customer) if s.customer_id is None:
                s = msgspec.structs.replace(
                    s,
                    customer_id=customer.id,
                    customer_name=customer.name,
                    phone=s.phone or customer.phone,
                )
            case CustomerResult(customer=customer):
                if customer is not None:
                    s = msgspec.structs.replace(
                        s, customer_id=customer.id, customer_name=customer.name
                    )
                if s.state == "IDENTIFICATION":
                    s = self._after_identity(s, out)
            case Resume(elapsed_s=elapsed):
                s = self._resume(s, elapsed, out)
            case ProviderTrouble(kind="timeout"):
                if s.ending is None:
                    s, _ = self._say(s, out, phrase="hold")
            case ProviderTrouble(kind="gap"):
                if not self._wrapping_up(s) and s.state in EXPECTING:
                    s = self._ask_to_repeat(s, out)
            case Heard() | Dtmf() if self._wrapping_up(s):
                pass  # the call is being wrapped up: nothing the caller says changes that
            case Heard():
                s = self._heard(s, event, out)
            case Dtmf(digit=d):
                s = self._dtmf(s, d, out)
        return msgspec.structs.replace(s, turn=s.turn + 1), out

    @staticmethod
    def _wrapping_up(s: Snapshot) -> bool:
        return s.ending is not None or s.ticket_pending or s.technician_pending

    # --- prompts ----------------------------------------------------------------------

    def _say(
        self,
        s: Snapshot,
        out: list[Action],
        *,
        phrase: str | None = None,
        text: str | None = None,
        interruptible: bool = True,
        slower: bool = False,
    ) -> tuple[Snapshot, str]:
        uid = f"u{s.utterances + 1}"
        speed = SLOWER if slower or s.slow else 1.0
        out.append(Say(uid, phrase=phrase, text=text, interruptible=interruptible, speed=speed))
        said = phrase if phrase is not None else text
        run = s.said_run + 1 if said == s.said_last else 1
        s = msgspec.structs.replace(
            s, utterances=s.utterances + 1, said_last=said, said_run=run, waiting=False
        )
        if not interruptible:
            s = msgspec.structs.replace(s, uninterruptible=(*s.uninterruptible, uid))
        return s, uid

    @staticmethod
    def _third_time(s: Snapshot, said: str | None) -> bool:
        """Would saying `said` now make it three times in a row?"""
        return said is not None and said == s.said_last and s.said_run >= 2

    def _prompt(
        self,
        s: Snapshot,
        out: list[Action],
        *,
        phrase: str | None = None,
        text: str | None = None,
        slower: bool = False,
        remember: bool = True,
    ) -> Snapshot:
        """Say a question and wait for the answer: the no-input timer starts when it ends.

        `remember`: the question is the one "répétez" says again (not "êtes-vous toujours en
        ligne ?"). A question asked twice in a row already is not asked a third time: the
        caller is stuck on it, and a person takes over."""
        if self._third_time(s, phrase if phrase is not None else text):
            return self._escalate(s, out, "la même question est restée sans réponse")
        out.append(CancelTimer("no_input"))
        s, uid = self._say(s, out, phrase=phrase, text=text, slower=slower)
        s = msgspec.structs.replace(s, awaiting=uid)
        if remember:
            s = msgspec.structs.replace(
                s, last_prompt=phrase or text, last_prompt_is_text=phrase is None
            )
        return s

    def _reprompt(self, s: Snapshot, out: list[Action]) -> Snapshot:
        """The question again, slower."""
        if s.last_prompt is None:
            return self._ask_to_repeat(s, out)
        if s.last_prompt_is_text:
            return self._prompt(s, out, text=s.last_prompt, slower=True)
        return self._prompt(s, out, phrase=s.last_prompt, slower=True)

    def _ask_to_repeat(self, s: Snapshot, out: list[Action]) -> Snapshot:
        """Ask the caller to say it again ("Pardon, … pouvez-vous répéter ?"); waited on like a
        question, though "répétez" then says the question it was about."""
        if self._third_time(s, "repeat"):
            return self._reprompt(s, out)
        out.append(CancelTimer("no_input"))
        s, uid = self._say(s, out, phrase="repeat")
        return msgspec.structs.replace(s, awaiting=uid)

    def _end(
        self,
        s: Snapshot,
        out: list[Action],
        *,
        how: str,
        outcome: str,
        phrase: str | None = None,
        text: str | None = None,
    ) -> Snapshot:
        """Say the last words (not interruptible), then hang up or transfer once they played."""
        out.append(CancelTimer("no_input"))
        s, uid = self._say(s, out, phrase=phrase, text=text, interruptible=False)
        out.append(RecordOutcome(outcome))
        out.append(StartTimer("end_guard", self.policy.end_guard_s))
        state = "TRANSFER" if how.startswith("transfer") else "GOODBYE"
        return msgspec.structs.replace(
            s, state=state, ending=how, ending_after=uid, outcome=outcome, awaiting=None
        )

    def _finish(self, s: Snapshot, out: list[Action]) -> Snapshot:
        if s.ending is None:
            return s
        out.append(CancelTimer("end_guard"))
        out.append(CancelTimer("max_length"))
        out.append(EndCall(s.ending, s.outcome or "ended"))
        return msgspec.structs.replace(s, state="CLOSED", ending_after=None)

    # --- events -----------------------------------------------------------------------

    def _start(self, s: Snapshot, e: CallStarted, out: list[Action]) -> Snapshot:
        if s.state != "INIT":
            return s
        # Trunks send "+33 6…", "0033…", "33…": kept as the brain looks numbers up.
        s = msgspec.structs.replace(s, caller_number=caller_id(e.caller), state="WELCOME")
        if e.customer is not None:
            s = msgspec.structs.replace(
                s, customer_id=e.customer.id, customer_name=e.customer.name, phone=e.customer.phone
            )
        out.append(StartTimer("max_length", self.policy.max_call_s))
        return self._prompt(s, out, phrase="welcome")

    def _playback_ended(self, s: Snapshot, e: PlaybackEnded, out: list[Action]) -> Snapshot:
        u = e.utterance_id
        s = msgspec.structs.replace(
            s,
            playing=tuple(p for p in s.playing if p != u),
            uninterruptible=tuple(p for p in s.uninterruptible if p != u),
        )
        if s.ending_after == u:
            return self._finish(s, out)
        if s.awaiting == u:
            out.append(StartTimer("no_input", self._silence_s(s)))
        return s

    def _silence_s(self, s: Snapshot) -> float:
        """How long to wait for an answer; longer while the caller's words are on their way."""
        extra = self.policy.max_utterance_s if s.speech_unheard else 0.0
        return (self.policy.wait_s if s.waiting else self.policy.no_input_s) + extra

    def _barge_in(self, s: Snapshot, out: list[Action]) -> Snapshot:
        """The caller speaks (over the bot or not): stop what may be cut, and stop counting
        silences: a caller who talks is not silent."""
        for u in s.playing:
            if u not in s.uninterruptible:
                out.append(Flush(u))
        s = msgspec.structs.replace(s, no_input=0)
        if self._wrapping_up(s):
            return s
        # Wait for the words, but not forever: noise can start "speech" that never yields a
        # transcript; the caller is then asked to repeat (see `step`), never left in silence.
        s = msgspec.structs.replace(s, speech_unheard=True)
        out.append(StartTimer("no_input", self._silence_s(s)))
        return s

    def _caller_hung_up(self, s: Snapshot, out: list[Action]) -> Snapshot:
        out.extend([CancelTimer("no_input"), CancelTimer("max_length"), CancelTimer("end_guard")])
        outcome = s.outcome or "abandoned"
        if s.outcome is None:
            out.append(RecordOutcome(outcome))
        if s.outcome is None and s.ticket is None and s.state not in ("INIT", "WELCOME"):
            out.append(OpenTicket(s.category, self._summary(s, "appel raccroché"), "open"))
        return msgspec.structs.replace(s, state="CLOSED", outcome=outcome)

    def _max_length(self, s: Snapshot, out: list[Action]) -> Snapshot:
        if s.ending is not None:
            return self._finish(s, out)
        out.append(OpenTicket(s.category, self._summary(s, "durée maximale atteinte"), "open"))
        return self._end(s, out, how="hangup", outcome="max_length", phrase="goodbye_max_length")

    def _no_input(self, s: Snapshot, out: list[Action]) -> Snapshot:
        if s.state == "IDENTIFICATION" and (s.dtmf_buffer or s.dtmf_mode):
            # Digits typed without "#" (asked or not), or none after the keypad prompt: a
            # caller who does not know their number still gets help, as one who does not say it.
            if s.dtmf_buffer:
                return self._typed_number(s, s.dtmf_buffer, out)
            return self._after_identity(s, out)
        n = s.no_input + 1
        s = msgspec.structs.replace(s, no_input=n)
        if n >= self.policy.max_no_input:
            if s.state not in ("INIT", "WELCOME"):
                out.append(OpenTicket(s.category, self._summary(s, "plus de réponse"), "open"))
            return self._end(s, out, how="hangup", outcome="no_input", phrase="goodbye_no_input")
        if n == self.policy.max_no_input - 1:
            return self._prompt(s, out, phrase="no_input_last", remember=False)
        if s.last_prompt is None or self._third_time(s, s.last_prompt):
            return self._prompt(s, out, phrase="no_input", remember=False)
        return self._reprompt(s, out)

    def _resume(self, s: Snapshot, elapsed_s: float, out: list[Action]) -> Snapshot:
        # The previous owner's timers died with it: the call's length limit goes on.
        out.append(StartTimer("max_length", max(1.0, self.policy.max_call_s - elapsed_s)))
        if s.ticket_pending:
            out.append(OpenTicket(s.category, self._summary(s, "reprise"), "open"))
        if s.technician_pending:
            out.append(FindTechnician(_technician_category(s)))
        if s.ending is not None:
            out.append(StartTimer("end_guard", 3.0))
        elif s.awaiting is not None and s.awaiting not in s.playing:
            out.append(StartTimer("no_input", self._silence_s(s)))
        return s

    # --- what the caller says -------------------------------------------------------

    def _heard(self, s: Snapshot, h: Heard, out: list[Action]) -> Snapshot:
        out.append(CancelTimer("no_input"))
        s = msgspec.structs.replace(s, no_input=0, speech_unheard=False)
        if not h.confident or not h.text.strip():
            return self._misunderstood(s, out)
        if h.intent == "repeat":
            if h.slots.get("speak"):  # "plus lentement", "plus fort": from now on, slower
                s = msgspec.structs.replace(s, slow=True)
            return self._reprompt(s, out)
        if h.intent == "agent":
            return self._escalate(s, out, "le client demande un technicien")
        if h.intent == "out_of_scope":
            return self._out_of_scope(s, h.slots.get("topic"), out)
        if h.intent == "goodbye" and s.state in EXPECTING:
            return self._take_leave(s, out)
        if h.intent == "wait" and s.state in EXPECTING:
            return self._let_wait(s, out)
        match s.state:
            case "WELCOME":
                return self._welcome_answer(s, h, out)
            case "IDENTIFICATION":
                return self._identity_answer(s, h, out)
            case "DIAGNOSTIC":
                return self._category_answer(s, h.intent, h.slots.get("category"), h.text, out)
            case "SOLUTION":
                if h.intent == "deny":  # "ça ne marche pas", "déjà essayé": the next fix
                    return self._next_fix(s, out)
                return self._solution_ack(s, out)
            case "VERIFICATION":
                return self._verification_answer(s, h.intent, out)
        return s

    def _misunderstood(self, s: Snapshot, out: list[Action]) -> Snapshot:
        """Once: "pardon, pouvez-vous répéter ?". Then the state's way forward: the keypad
        (and a person when the keypad fails too), or on to the next question."""
        n = s.misunderstood + 1
        s = msgspec.structs.replace(s, misunderstood=n, speech_unheard=False)
        if n < self.policy.max_misunderstood:
            return self._ask_to_repeat(s, out)
        if s.state == "IDENTIFICATION":
            if self._keypad_may_identify(s):
                return self._ask_phone_keypad(s, out)
            return self._after_identity(s, out)  # unknown callers still get help
        if s.state in KEYPAD and not s.dtmf_mode:
            s = msgspec.structs.replace(s, dtmf_mode=True)
            return self._prompt(s, out, phrase=KEYPAD[s.state])
        if s.state == "WELCOME":  # the problem will be asked again, as a closed question
            s = msgspec.structs.replace(s, state="IDENTIFICATION", misunderstood=0)
            return self._prompt(s, out, phrase="ask_identity")
        if s.state == "SOLUTION":
            return self._solution_ack(s, out)  # a yes/no question, with a keypad fallback
        return self._escalate(s, out, "incompréhension répétée, même au clavier")

    def _take_leave(self, s: Snapshot, out: list[Action]) -> Snapshot:
        """Goodbye before the fix was confirmed: not solved. As when the caller hangs up, a
        call that got past the welcome leaves a ticket."""
        if s.state != "WELCOME" and s.ticket is None:
            summary = self._summary(s, "le client a pris congé avant la fin")
            out.append(OpenTicket(s.category, summary, "open"))
        return self._end(s, out, how="hangup", outcome="abandoned", phrase="goodbye")

    def _let_wait(self, s: Snapshot, out: list[Action]) -> Snapshot:
        """A caller who asks for time ("attendez, je cherche mon numéro") is told to take it,
        and has `wait_s` of silence, not `no_input_s`, before the question is asked again. No
        misunderstanding is counted, and "répétez" still says the question. Asked a third time
        in a row, the bot keeps waiting without saying it again."""
        if s.state == "SOLUTION":
            # "Attendez, je débranche la box": once the time is up, whether the fix worked.
            s = msgspec.structs.replace(
                _to_verification(s), last_prompt="ask_verification", last_prompt_is_text=False
            )
        if self._third_time(s, "take_your_time"):
            s = msgspec.structs.replace(s, waiting=True)
            out.append(StartTimer("no_input", self._silence_s(s)))
            return s
        s, uid = self._say(s, out, phrase="take_your_time")
        # The long silence is counted from the end of the phrase, as after a question.
        return msgspec.structs.replace(s, awaiting=uid, waiting=True)

    def _out_of_scope(self, s: Snapshot, topic: str | None, out: list[Action]) -> Snapshot:
        """Billing, contracts, moving house, cancellation…: not for this line. Said politely,
        then an advisor (any free person), or a ticket."""
        s = msgspec.structs.replace(s, topic=topic or "other")
        return self._escalate(s, out, "demande hors dépannage", phrase="out_of_scope")

    def _welcome_answer(self, s: Snapshot, h: Heard, out: list[Action]) -> Snapshot:
        category = h.slots.get("category") or _intent_category(h.intent)
        problem = self.catalog.match(category, h.text) if category else None
        s = msgspec.structs.replace(
            s,
            state="IDENTIFICATION",
            misunderstood=0,
            category=category or s.category,
            problem=problem.key if problem else s.problem,
        )
        if h.slots.get("phone") or h.slots.get("name"):
            return self._identity_answer(s, h, out)
        return self._prompt(s, out, phrase="ask_identity")

    def _identity_answer(self, s: Snapshot, h: Heard, out: list[Action]) -> Snapshot:
        # A number heard with a digit lost is no phone slot, but a customer's number close to
        # it is one to read back.
        gave_phone = "phone" in h.slots or h.near is not None
        answered = gave_phone or h.intent in ("affirm", "deny") or _intent_category(h.intent)
        if s.confirming_phone and not answered:
            # Neither yes, no nor a number ("Euh… oui, oui" heard as "1, 2, 3, 4"): the
            # read-back is asked again, not taken as a no that leaves the caller unidentified.
            return self._misunderstood(s, out)
        if s.confirming_phone:
            candidate = (s.candidate_id, s.candidate_name)
            s = msgspec.structs.replace(
                s, confirming_phone=False, candidate_id=None, candidate_name=None
            )
            said_again = gave_phone and (
                h.slots.get("phone") == s.phone
                or (h.near is not None and h.near.id == candidate[0])
            )
            if said_again and h.intent == "deny":
                # "Non, c'est le …" and the number read back, heard the same wrong way again:
                # a correction speech cannot hear. The keypad does not mishear.
                if self._keypad_may_identify(s):
                    return self._ask_phone_keypad(s, out)
                return self._after_identity(s, out)
            if said_again or (h.intent == "affirm" and not gave_phone):
                if candidate[0] is not None:  # the close customer's number, confirmed
                    s = msgspec.structs.replace(
                        s, customer_id=candidate[0], customer_name=candidate[1]
                    )
                return self._after_identity(s, out)  # or the right number, just not a customer
            if h.intent == "deny" and not gave_phone:
                s = msgspec.structs.replace(s, phone=None)
                return self._prompt(s, out, phrase="ask_phone")
            if _intent_category(h.intent) and not gave_phone:
                # Moving on to the problem is a "yes" that saves a question.
                s = msgspec.structs.replace(s, state="DIAGNOSTIC", misunderstood=0)
                return self._category_answer(s, h.intent, h.slots.get("category"), h.text, out)
        name = h.slots.get("name") or s.name
        phone = h.slots.get("phone") or (h.near.phone if h.near else None) or s.phone
        s = msgspec.structs.replace(
            s, name=name, phone=phone, identity_attempts=s.identity_attempts + 1
        )
        if h.customer is not None:
            s = msgspec.structs.replace(s, customer_id=h.customer.id, customer_name=h.customer.name)
        if phone is None and s.caller_number is None and s.identity_attempts < 2:
            return self._prompt(s, out, phrase="ask_phone")
        if gave_phone and h.customer is None and s.identity_attempts <= 2:
            # No customer has the number as heard: speech recognition gets digits wrong, so
            # read it back rather than carry on with a wrong identity. When a customer's number
            # is a digit or two away, that is the one read back: a "oui" identifies the caller.
            noted = h.near.phone if h.near is not None else h.slots["phone"]
            s = msgspec.structs.replace(
                s,
                confirming_phone=True,
                phone=noted,
                candidate_id=h.near.id if h.near is not None else None,
                candidate_name=h.near.name if h.near is not None else None,
            )
            text = f"J'ai noté le {spoken(noted)}. Est-ce bien votre numéro ?"
            return self._prompt(s, out, text=text)
        if self._keypad_may_identify(s):
            return self._ask_phone_keypad(s, out)
        return self._after_identity(s, out)

    @staticmethod
    def _keypad_may_identify(s: Snapshot) -> bool:
        """Speech gave no number a customer has: the keypad, which mishears no digit, is worth
        a try once, unless the line already told who calls."""
        return s.customer_id is None and s.caller_number is None and not s.dtmf_mode

    def _ask_phone_keypad(self, s: Snapshot, out: list[Action]) -> Snapshot:
        s = msgspec.structs.replace(
            s,
            phone=None,  # what speech made of it was not confirmed: no ticket carries it
            dtmf_mode=True,
            dtmf_buffer="",
            confirming_phone=False,
            candidate_id=None,
            candidate_name=None,
        )
        return self._prompt(s, out, phrase=KEYPAD["IDENTIFICATION"])

    def _after_identity(self, s: Snapshot, out: list[Action]) -> Snapshot:
        s = msgspec.structs.replace(
            s,
            state="DIAGNOSTIC",
            misunderstood=0,
            dtmf_mode=False,
            dtmf_buffer="",
            confirming_phone=False,
        )
        return self._prompt(s, out, phrase="ask_category")

    def _category_answer(
        self, s: Snapshot, intent: str, slot: str | None, text: str, out: list[Action]
    ) -> Snapshot:
        category = slot or _intent_category(intent)
        if category is None:
            return self._misunderstood(s, out)
        problem = self.catalog.match(category, text)
        if problem is None:  # no symptom words: keep what the caller said first, else the default
            same = s.problem is not None and s.category == category
            problem = (
                self.catalog.get(s.problem)
                if same and s.problem
                else self.catalog.default(category)
            )
        if problem is None:
            return self._escalate(
                msgspec.structs.replace(s, category=category), out, "aucune solution connue"
            )
        s = msgspec.structs.replace(
            s, category=category, problem=problem.key, step=0, misunderstood=0, dtmf_mode=False
        )
        return self._propose(s, problem, out)

    def _propose(self, s: Snapshot, problem: Problem, out: list[Action]) -> Snapshot:
        text = problem.steps[s.step]
        s = msgspec.structs.replace(s, state="SOLUTION", tried=(*s.tried, text))
        return self._prompt(s, out, text=text)

    def _solution_ack(self, s: Snapshot, out: list[Action]) -> Snapshot:
        return self._prompt(_to_verification(s), out, phrase="ask_verification")

    def _verification_answer(self, s: Snapshot, intent: str, out: list[Action]) -> Snapshot:
        if intent == "affirm":
            return self._end(s, out, how="hangup", outcome="solved", phrase="goodbye")
        if intent == "deny":
            return self._next_fix(s, out)
        return self._misunderstood(s, out)

    def _next_fix(self, s: Snapshot, out: list[Action]) -> Snapshot:
        """The fix did not work: the next one of the problem, or a technician."""
        problem = self.catalog.get(s.problem) if s.problem else None
        if problem is not None and s.step + 1 < len(problem.steps):
            s = msgspec.structs.replace(s, step=s.step + 1, misunderstood=0, dtmf_mode=False)
            return self._propose(s, problem, out)
        return self._escalate(s, out, "les solutions proposées n'ont pas suffi")

    def _escalate(
        self, s: Snapshot, out: list[Action], why: str, *, phrase: str = "hold"
    ) -> Snapshot:
        """No solution left, the caller is stuck or asks for a person: a technician (an advisor
        for an out-of-scope request) if one is free, else a ticket."""
        out.append(CancelTimer("no_input"))
        out.append(FindTechnician(_technician_category(s)))
        s, _ = self._say(s, out, phrase=phrase)
        return msgspec.structs.replace(
            s, technician_pending=True, awaiting=None, tried=(*s.tried, f"[{why}]")
        )

    def _technician(self, s: Snapshot, r: TechnicianResult, out: list[Action]) -> Snapshot:
        if not s.technician_pending:
            return s
        s = msgspec.structs.replace(s, technician_pending=False)
        who = "un conseiller" if s.topic else "un technicien"
        category = _technician_category(s)  # a billing question is no internet ticket
        if r.available:
            summary = self._summary(s, f"transféré à {who}")
            out.append(OpenTicket(category, summary, "transferred"))
            phrase = "transfer_advisor" if s.topic else "transfer"
            return self._end(s, out, how=f"transfer:{r.target}", outcome="transfer", phrase=phrase)
        out.append(OpenTicket(category, self._summary(s, f"rappel par {who}"), "open"))
        return msgspec.structs.replace(s, state="TICKET", ticket_pending=True)

    def _ticket_opened(self, s: Snapshot, number: str | None, out: list[Action]) -> Snapshot:
        was_pending = s.ticket_pending
        s = msgspec.structs.replace(s, ticket=number or s.ticket, ticket_pending=False)
        if not was_pending or s.state != "TICKET":
            return s
        who = "conseiller" if s.topic else "technicien"
        if number is None:
            # The request is recorded (an event the archiver turns into a ticket), but no
            # number exists yet: the caller is told only what is true.
            text = (
                f"Aucun {who} n'est disponible pour le moment. Votre demande est enregistrée "
                f"et un {who} vous rappellera. Merci pour votre appel, au revoir."
            )
        else:
            text = (
                f"Aucun {who} n'est disponible pour le moment. J'ai ouvert le ticket numéro "
                f"{number}. Un {who} vous rappellera. Merci pour votre appel, au revoir."
            )
        return self._end(s, out, how="hangup", outcome="ticket", text=text)

    def _dtmf(self, s: Snapshot, digit: str, out: list[Action]) -> Snapshot:
        out.append(CancelTimer("no_input"))
        s = msgspec.structs.replace(s, no_input=0)
        match s.state, digit:
            case "DIAGNOSTIC", "1":
                return self._category_answer(s, "internet", "internet", "", out)
            case "DIAGNOSTIC", "2":
                return self._category_answer(s, "mobile", "mobile", "", out)
            case "VERIFICATION", "1":
                return self._verification_answer(s, "affirm", out)
            case "VERIFICATION", "2":
                return self._verification_answer(s, "deny", out)
            case "SOLUTION", _:
                return self._solution_ack(s, out)
            case (("WELCOME" | "IDENTIFICATION"), d) if d.isdigit():
                buf = s.dtmf_buffer + d
                s = msgspec.structs.replace(s, dtmf_buffer=buf, state="IDENTIFICATION")
                # A national number is 10 digits; "00" and a country code, 13 (or "#").
                if len(buf) >= (13 if buf.startswith("00") else 10):
                    return self._typed_number(s, buf, out)
                # A caller who stops typing is not left waiting in silence (see `_no_input`).
                out.append(StartTimer("no_input", self.policy.no_input_s))
                return s
            case (("WELCOME" | "IDENTIFICATION"), "#") if s.dtmf_buffer:
                return self._typed_number(s, s.dtmf_buffer, out)
            case _, "#":
                # Nothing typed to end: the "#" asked for after a number that was complete at
                # its tenth digit. Not a wrong key.
                return s
            case _, "0":
                return self._escalate(s, out, "le client a demandé un technicien (touche 0)")
        return self._misunderstood(s, out)

    @staticmethod
    def _typed_number(s: Snapshot, digits: str, out: list[Action]) -> Snapshot:
        number = caller_id(digits) or digits
        out.append(FindCustomer(number))
        return msgspec.structs.replace(s, phone=number, dtmf_buffer="")

    @staticmethod
    def _summary(s: Snapshot, why: str) -> str:
        who = s.customer_name or s.name or "client non identifié"
        tried = "; ".join(t for t in s.tried if not t.startswith("[")) or "aucune"
        about = s.category or "catégorie inconnue"
        if s.topic is not None:
            about += f", hors dépannage: {TOPIC_LABELS.get(s.topic, 'autre demande')}"
        return f"{who} ({about}): {why}. Solutions essayées: {tried}"


def _to_verification(s: Snapshot) -> Snapshot:
    """On to "does it work now?" after a fix, with the misunderstandings and keypad of the fix
    left behind."""
    return msgspec.structs.replace(s, state="VERIFICATION", misunderstood=0, dtmf_mode=False)


def _intent_category(intent: str) -> str | None:
    return intent if intent in ("internet", "mobile") else None


def _technician_category(s: Snapshot) -> str | None:
    """Who may take the call: a technician of its category; anyone free for an out-of-scope
    request (no technician queue is about billing)."""
    return None if s.topic else s.category
