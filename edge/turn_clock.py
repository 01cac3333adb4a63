"""How long the caller waited for the bot, turn by turn, as the caller heard it. Pure.

A turn starts when the bot starts owing an answer: the call's start (the welcome), the end of
a caller's line (the last voiced audio, before the VAD's hang-over), a key press. It ends when
the pipeline's answer starts playing (the turn latency), or when the brain decides to say
nothing (not a turn). Dead air is the silence inside it: from its start to the first sound the
caller heard, the answer or the edge's own hold phrase. Loop seconds in, seconds out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

After = Literal["start", "speech", "dtmf"]


@dataclass(frozen=True, slots=True)
class Answered:
    after: After
    latency_s: float  # end of the caller's line (or the start) -> first frame of the answer
    dead_air_s: float | None  # None: already measured (a hold phrase broke the silence first)


class TurnClock:
    def __init__(self) -> None:
        self._since: float | None = None
        self._after: After = "start"
        self._heard_something = False

    @property
    def owed(self) -> bool:
        return self._since is not None

    def owe(self, since: float, after: After) -> None:
        """The bot owes an answer to what ended at `since` (a later line restarts the clock)."""
        self._since, self._after, self._heard_something = since, after, False

    def nothing_owed(self) -> None:
        """The brain decided to say nothing: not a turn the caller waits on."""
        self._since = None

    def local_sound(self, now: float) -> float | None:
        """The edge's hold phrase started: the dead air so far, once per turn."""
        if self._since is None or self._heard_something:
            return None
        self._heard_something = True
        return max(0.0, now - self._since)

    def answer_started(self, now: float) -> Answered | None:
        """The pipeline's answer started playing: the turn is over."""
        if self._since is None:
            return None
        latency = max(0.0, now - self._since)
        answered = Answered(self._after, latency, None if self._heard_something else latency)
        self._since = None
        return answered
