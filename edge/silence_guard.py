"""When the bot owes the caller an answer and the pipeline stays silent, the edge speaks. Pure.

The bot owes an answer from the moment a call starts (the welcome) and from the end of each
caller line or key press, until audio from the pipeline starts playing or the brain decides to
say nothing (a decision on that input with no `say`). While it owes one and nothing plays, the
edge plays the cached hold phrase itself every `hold_after_s`; once the answer is
`unavailable_after_s` overdue it plays the cached "unavailable" phrase and ends the call with an
outcome the dialplan routes (a technician by default). A dead STT, brain or TTS, a NATS outage:
the caller hears the bot either way, never a long silence.

No clock, no I/O: the call feeds what happened with the time it happened (loop seconds) and asks
`due(now)` once per tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["hold", "unavailable"]
# Decisions that answer the caller: one of these with no `say` means "nothing to say" (keypad
# digits being collected, a line heard while the call winds up).
ANSWERING_TRIGGERS = frozenset({"transcript", "dtmf"})


@dataclass(frozen=True, kw_only=True)
class GuardPolicy:
    hold_after_s: float = 2.0
    unavailable_after_s: float = 12.0


class SilenceGuard:
    def __init__(self, policy: GuardPolicy, now: float) -> None:
        self.policy = policy
        self.owed_since: float | None = now  # the welcome is owed from the start
        self.first_owed: float | None = now  # start of the unanswered stretch
        self.caller_speaking = False
        self.pipeline_playing = 0  # pipeline utterances playing now
        self.local_playing = 0  # our own hold phrases playing now
        self.quiet_since = now  # end of the last thing the caller heard from us, or of speech
        self.holds = 0
        self.gave_up = False

    @property
    def owed(self) -> bool:
        return self.owed_since is not None

    # --- what happened ----------------------------------------------------------------------

    def caller_started(self) -> None:
        self.caller_speaking = True

    def caller_stopped(self, now: float) -> None:
        """End of a caller line (or a key press): an answer is owed, unless the caller was only
        talking over the bot, which is still speaking."""
        self.caller_speaking = False
        self.quiet_since = now
        if self.pipeline_playing:
            return
        self.owed_since = now
        if self.first_owed is None:
            self.first_owed = now

    def pipeline_started(self) -> None:
        self.pipeline_playing += 1
        self.owed_since = self.first_owed = None

    def pipeline_ended(self, now: float) -> None:
        self.pipeline_playing = max(0, self.pipeline_playing - 1)
        self.quiet_since = now

    def local_started(self) -> None:
        self.local_playing += 1
        self.holds += 1

    def local_ended(self, now: float) -> None:
        self.local_playing = max(0, self.local_playing - 1)
        self.quiet_since = now

    def decided(self, trigger: str, says: bool) -> None:
        """The brain decided on an input; with nothing to say, nothing is owed any more."""
        if trigger in ANSWERING_TRIGGERS and not says:
            self.owed_since = self.first_owed = None

    # --- what to do -------------------------------------------------------------------------

    def due(self, now: float) -> Action | None:
        if self.owed_since is None or self.first_owed is None or self.gave_up:
            return None
        if self.caller_speaking or self.pipeline_playing or self.local_playing:
            return None
        if now - self.first_owed >= self.policy.unavailable_after_s:
            self.gave_up = True
            return "unavailable"
        if now - max(self.owed_since, self.quiet_since) >= self.policy.hold_after_s:
            self.quiet_since = now
            return "hold"
        return None
