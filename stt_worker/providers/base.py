"""The one hook an STT provider implements, and what it yields."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol


class ProviderError(Exception):
    """A provider failure converted at the boundary; `retryable` says if a retry may help."""

    retryable = True


class ProviderTimeout(ProviderError):
    pass


@dataclass(frozen=True, slots=True)
class HeardWord:
    word: str
    start: float
    end: float
    confidence: float = 1.0


@dataclass(frozen=True, slots=True)
class Heard:
    """One provider result. Times are seconds of audio since the start of the stream."""

    kind: Literal["interim", "final", "utterance_end", "speech_started"]
    text: str = ""
    confidence: float = 0.0
    start: float = 0.0
    end: float = 0.0
    speech_final: bool = False
    words: tuple[HeardWord, ...] = field(default=())
    no_speech_prob: float | None = None
    avg_logprob: float | None = None
    # Published as the transcript's `provider` instead of the provider's name: says how the
    # text was obtained (e.g. "whisper+expected": an expected answer, not free decoding).
    provider: str | None = None


@dataclass
class SttContext:
    """What the provider knows about the call beyond its audio, updated live while it runs."""

    # What the dialog waits for (`decision.expecting`: yes_no, category, identity, phone...).
    expecting: str | None = None
    # Called when `expecting` changes, for providers that pass it on (Deepgram keyterms).
    on_change: list[Callable[[SttContext], None]] = field(default_factory=list)

    def expect(self, expecting: str | None) -> None:
        if expecting != self.expecting:
            self.expecting = expecting
            for callback in self.on_change:
                callback(self)


class SttProvider(Protocol):
    name: str

    def stream(
        self,
        audio: AsyncIterator[bytes],
        *,
        call_id: str = "-",
        context: SttContext | None = None,
    ) -> AsyncIterator[Heard]:
        """Transcribe one call: `audio` yields s16le 8 kHz mono chunks in order and ends when
        the call ends; the provider yields results as they come and ends after the last.
        `call_id` only labels the provider's log lines; `context` (read it live, never keep a
        copy) says what the bot is waiting for."""
        ...
