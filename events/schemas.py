"""Every message that crosses a process boundary, as msgspec Structs.

One tagged union per subject kind (`event`, `transcript`, `playback`, `control`) and plain
structs for `decision` and `say`. All are frozen and keyword-only; every struct carries
`v` (schema version), `call_id` and `ts` (wall-clock seconds). Evolution rules: README.md.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

SCHEMA_VERSION = 1


class Base(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    v: int = SCHEMA_VERSION
    call_id: str
    ts: float
    # Claim epoch of the worker instance that published it (see `Claimed`); receivers drop a
    # message whose epoch is below the newest claim of its kind. 0: the edge, which owns its
    # calls through the TCP connection, or a message from before epochs existed.
    epoch: int = 0


# --- call.<id>.event.<kind> -------------------------------------------------------------


class CallEvent(Base, frozen=True, kw_only=True, tag_field="kind"):
    pass


class Started(CallEvent, frozen=True, kw_only=True, tag="started"):
    caller: str | None = None  # number registered by the dialplan, if any
    peer: str = ""  # Asterisk address as seen by the edge
    edge: str = ""  # edge instance that holds the TCP connection
    sample_rate: int = 8000  # inbound rate before the edge resampled to 8 kHz


class Dtmf(CallEvent, frozen=True, kw_only=True, tag="dtmf"):
    digit: str
    seq: int


class Hangup(CallEvent, frozen=True, kw_only=True, tag="hangup"):
    by: Literal["caller", "bot", "edge"]
    reason: str


class Ended(CallEvent, frozen=True, kw_only=True, tag="ended"):
    reason: str
    outcome: str  # hangup | transfer[:target]
    duration_s: float
    frames_in: int = 0
    frames_out: int = 0
    underruns: int = 0


class BargeIn(CallEvent, frozen=True, kw_only=True, tag="bargein"):
    utterance_id: str
    source: Literal["edge_vad", "stt"] = "edge_vad"


class Error(CallEvent, frozen=True, kw_only=True, tag="error"):
    source: str  # edge | stt | brain | tts
    code: str  # e.g. provider_timeout, protocol, takeover
    message: str
    retryable: bool = True


class Claimed(CallEvent, frozen=True, kw_only=True, tag="claimed"):
    """A worker instance took ownership of the call; published before anything else it says.

    `epoch` grows with every hand-over (it is the claim's delivery count), so a stalled owner
    that resumes after a takeover is recognised by its lower epoch and ignored."""

    service: str  # stt_worker | brain | tts_worker
    instance: str  # who: host-pid
    takeover: bool = False


class Ticket(CallEvent, frozen=True, kw_only=True, tag="ticket"):
    """A ticket the dialog opened: `requested` first (durable intent, written to PostgreSQL by
    the archiver if nothing else does), then `opened` once the database gave its number."""

    state: Literal["requested", "opened"]
    number: str | None = None
    category: str | None = None
    summary: str = ""
    status: str = "open"  # open | transferred
    customer_id: int | None = None


CallEventUnion = Started | Dtmf | Hangup | Ended | BargeIn | Error | Claimed | Ticket


# --- call.<id>.transcript ----------------------------------------------------------------


class Word(msgspec.Struct, frozen=True, kw_only=True, array_like=False):
    word: str
    start: float  # seconds of call audio
    end: float
    confidence: float = 1.0


class Transcript(Base, frozen=True, kw_only=True, tag_field="type"):
    provider: str = ""
    seq: int = 0


class Interim(Transcript, frozen=True, kw_only=True, tag="interim"):
    text: str
    confidence: float = 0.0
    start: float = 0.0
    end: float = 0.0


class Final(Transcript, frozen=True, kw_only=True, tag="final"):
    text: str
    confidence: float = 0.0
    speech_final: bool = True
    start: float = 0.0  # call-audio time of the first word
    end: float = 0.0  # call-audio time of the end of speech
    words: tuple[Word, ...] = ()
    latency_ms: float | None = None  # end of speech (audio time) -> transcript published
    no_speech_prob: float | None = None
    avg_logprob: float | None = None


# `Final.provider` of a transcript that is no free decoding: one of the answers the bot expected,
# chosen by scoring them all against the audio (or a number decoded again from its "0"). Its
# `avg_logprob` is that answer's forced score, lower than a free decoding's for the same words.
EXPECTED_ANSWER = "whisper+expected"


class UtteranceEnd(Transcript, frozen=True, kw_only=True, tag="utterance_end"):
    last_word_end: float = 0.0


class SpeechStarted(Transcript, frozen=True, kw_only=True, tag="speech_started"):
    at: float = 0.0  # call-audio time of the onset


class Gap(Transcript, frozen=True, kw_only=True, tag="gap"):
    """Audio was not transcribed (owner died, provider reconnect): the caller may need to repeat."""

    from_s: float
    to_s: float
    reason: str


TranscriptUnion = Interim | Final | UtteranceEnd | SpeechStarted | Gap


# --- call.<id>.decision ------------------------------------------------------------------


class Latency(msgspec.Struct, frozen=True, kw_only=True):
    """One turn on the call's timeline, in ms from the caller's end of speech."""

    end_of_speech_s: float | None = None  # call-audio time
    transcript_ms: float | None = None
    nlu_ms: float | None = None
    say_ms: float | None = None
    first_frame_ms: float | None = None  # filled from playback.started by readers


class Decision(Base, frozen=True, kw_only=True, tag="decision"):
    turn: int
    trigger: str  # what was decided on: transcript | dtmf | timer:<name> | started | ...
    trigger_seq: int  # CALLS stream sequence of the trigger (0 for timers)
    state_from: str
    state_to: str
    intent: str | None = None
    slots: dict[str, str] = {}
    text: str | None = None  # the caller's words the decision used
    nlu_source: str = "rules"  # rules | llm | llm_fallback
    llm_raw: str | None = None
    llm_ms: float | None = None
    actions: tuple[str, ...] = ()
    latency: Latency | None = None
    snapshot: dict[str, Any] = {}  # dialog state after the decision: takeover resumes from it
    # What the dialog now waits for (yes_no, category, identity, phone, ...): recognisers use
    # it to prefer the answers a closed question allows.
    expecting: str | None = None


# --- call.<id>.say -----------------------------------------------------------------------


class Say(Base, frozen=True, kw_only=True, tag="say"):
    utterance_id: str
    phrase: str | None = None  # key of a cached phrase, played with no provider call
    text: str | None = None  # dynamic text, synthesized
    interruptible: bool = True  # a barge-in may cut it (the welcome) or not (legal notices)
    seq: int = 0
    speed: float = 1.0  # speaking rate factor: below 1 when the caller asked to slow down


# --- call.<id>.playback ------------------------------------------------------------------


class Playback(Base, frozen=True, kw_only=True, tag_field="state"):
    utterance_id: str
    frames: int = 0
    origin: str = "tts"  # tts | edge (a cached phrase the edge played itself: hold, unavailable)


class PlaybackStarted(Playback, frozen=True, kw_only=True, tag="started"):
    pass


class PlaybackFinished(Playback, frozen=True, kw_only=True, tag="finished"):
    pass


class PlaybackInterrupted(Playback, frozen=True, kw_only=True, tag="interrupted"):
    reason: str = "flush"


PlaybackUnion = PlaybackStarted | PlaybackFinished | PlaybackInterrupted


# --- call.<id>.control -------------------------------------------------------------------


class Control(Base, frozen=True, kw_only=True, tag_field="action"):
    pass


class Flush(Control, frozen=True, kw_only=True, tag="flush"):
    utterance_id: str | None = None  # None: everything queued


class HangupCall(Control, frozen=True, kw_only=True, tag="hangup"):
    reason: str = "dialog_end"


class Transfer(Control, frozen=True, kw_only=True, tag="transfer"):
    target: str = "technicians"


ControlUnion = Flush | HangupCall | Transfer


# --- edge.alive (core NATS, not stored) ----------------------------------------------


class EdgeAlive(msgspec.Struct, frozen=True, kw_only=True):
    """Every second, each edge names the calls it holds a connection for. A worker releases a
    call whose edge stopped naming it (the `ended` was lost) or went silent (the edge died)."""

    v: int = SCHEMA_VERSION
    edge: str
    ts: float
    interval_s: float = 1.0
    calls: tuple[str, ...] = ()


AnyEvent = CallEventUnion | TranscriptUnion | Decision | Say | PlaybackUnion | ControlUnion
