"""When the caller's turn ends: a pure state machine over VAD windows and recognition results.

Waiting a fixed 600 ms of silence before recognising made every answer late (bench/stt_turns.py).
Instead, after a short pause (`pause_ms`) the utterance so far is recognised *speculatively*;
when the recogniser's text reads as a finished answer to what the bot asked
(`answers.turn_complete`), the turn ends there. When the text looks unfinished ("Pierre Dupont",
a number still being read, "euh", "mon numéro est le") the turn waits up to `end_ms` of
silence; if the caller speaks again first, the speculation is discarded and the utterance goes
on, so a pause inside a line never splits it.

Inputs: `feed(pcm)` (any chunking), `heard(id, complete)` when a speculation's text is known,
`flush()` at the end of the audio. Outputs, in audio order:

- `Onset` once `min_speech_ms` of speech accumulated (barge-in, `speech_started`);
- `Speculate(id, pcm, ...)`: recognise this audio, then call `heard(id, ...)`;
- `Discard(id)`: speech resumed, that result is not wanted;
- `Commit(id)`: the turn ended; its transcript is speculation `id`'s result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 8000


@dataclass(frozen=True, kw_only=True)
class TurnConfig:
    threshold: float = 0.5  # speech from this probability up
    # Silence below it; in between, the previous decision holds. Silero's probability decays
    # over ~150 ms after the last word: 0.45 rather than its usual 0.35 answers ~40 ms sooner
    # (a dip inside a word only costs a discarded speculation).
    neg_threshold: float = 0.45
    min_speech_ms: int = 120
    pause_ms: int = 250  # silence before the utterance so far is recognised
    end_ms: int = 800  # silence that ends a turn whatever its text
    max_utterance_ms: int = 12_000
    pre_roll_ms: int = 200  # audio kept before the first speech window


@dataclass(frozen=True, slots=True)
class Onset:
    at: float  # stream seconds of the first speech window


@dataclass(frozen=True, slots=True)
class Speculate:
    id: int
    start: float  # stream seconds of the first speech window
    end: float  # stream seconds of the end of the last speech window
    pcm: bytes  # s16le 8 kHz: pre-roll, speech and the pause so far


@dataclass(frozen=True, slots=True)
class Discard:
    id: int


@dataclass(frozen=True, slots=True)
class Commit:
    id: int
    cut: bool = False  # ended by the length cap, not by the caller


TurnEvent = Onset | Speculate | Discard | Commit


@dataclass
class TurnTaker:
    """`probability(window)` gives P(speech) of `window` int16 samples (Silero: 256)."""

    probability: Callable[[np.ndarray], float]
    window: int
    config: TurnConfig = field(default_factory=TurnConfig)
    _pending: bytes = b""
    _windows: int = 0  # windows consumed since the stream start
    _history: list[bytes] = field(default_factory=list)  # windows of the open utterance
    _speaking: bool = False
    _speech_windows: int = 0
    _silent_run: int = 0
    _first_speech: int | None = None
    _last_speech: int | None = None
    _onset_sent: bool = False
    _spec: int | None = None  # the open speculation
    _next_id: int = 0

    @property
    def window_s(self) -> float:
        return self.window / SAMPLE_RATE

    @property
    def position(self) -> float:
        return self._windows * self.window_s

    def _n(self, ms: int) -> int:
        return max(1, round(ms / 1000 / self.window_s))

    def feed(self, pcm: bytes) -> list[TurnEvent]:
        data = self._pending + pcm
        size = self.window * 2
        whole = len(data) - len(data) % size
        self._pending = data[whole:]
        out: list[TurnEvent] = []
        for i in range(0, whole, size):
            out.extend(self._step(data[i : i + size]))
        return out

    def heard(self, spec_id: int, complete: bool) -> list[TurnEvent]:
        """A speculation's text is known; `complete`: it reads as a finished answer."""
        if spec_id != self._spec or not complete:
            return []  # discarded meanwhile, or wait for `end_ms`
        return [self._commit(cut=False)]

    def flush(self) -> list[TurnEvent]:
        """End of the audio: an utterance still open is recognised and committed."""
        if not self._onset_sent:
            self._reset()
            return []
        out: list[TurnEvent] = []
        if self._spec is None:
            out.append(self._speculate())
        out.append(self._commit(cut=False))
        return out

    def _step(self, frame: bytes) -> list[TurnEvent]:
        cfg = self.config
        p = self.probability(np.frombuffer(frame, dtype="<i2"))
        if p >= cfg.threshold:
            self._speaking = True
        elif p < cfg.neg_threshold:
            self._speaking = False
        index = self._windows
        self._windows += 1
        self._history.append(frame)
        out: list[TurnEvent] = []
        if self._speaking:
            if self._spec is not None:
                out.append(Discard(self._spec))  # a pause inside the line, not its end
                self._spec = None
            if self._first_speech is None:
                self._first_speech = index
            self._last_speech = index
            self._speech_windows += 1
            self._silent_run = 0
            if not self._onset_sent and self._speech_windows >= self._n(cfg.min_speech_ms):
                self._onset_sent = True
                out.append(Onset(at=self._first_speech * self.window_s))
        elif self._first_speech is not None:
            self._silent_run += 1
            if not self._onset_sent:
                if self._silent_run >= self._n(cfg.pause_ms):
                    self._reset()  # a click or a breath: too short to be speech
            else:
                if self._spec is None and self._silent_run >= self._n(cfg.pause_ms):
                    out.append(self._speculate())
                if self._silent_run >= self._n(cfg.end_ms):
                    if self._spec is None:
                        out.append(self._speculate())
                    out.append(self._commit(cut=False))
        if (
            self._onset_sent
            and self._first_speech is not None
            and index + 1 - self._first_speech >= self._n(cfg.max_utterance_ms)
        ):
            if self._spec is None:
                out.append(self._speculate())
            out.append(self._commit(cut=True))
        self._trim_history()
        return out

    def _speculate(self) -> Speculate:
        assert self._first_speech is not None and self._last_speech is not None
        first_kept = self._windows - len(self._history)
        begin = max(first_kept, self._first_speech - self._n(self.config.pre_roll_ms))
        self._spec = self._next_id
        self._next_id += 1
        return Speculate(
            id=self._spec,
            start=self._first_speech * self.window_s,
            end=(self._last_speech + 1) * self.window_s,
            pcm=b"".join(self._history[begin - first_kept :]),
        )

    def _commit(self, *, cut: bool) -> Commit:
        assert self._spec is not None
        commit = Commit(self._spec, cut=cut)
        self._spec = None
        self._reset()
        return commit

    def _reset(self) -> None:
        self._speech_windows = 0
        self._silent_run = 0
        self._first_speech = None
        self._last_speech = None
        self._onset_sent = False
        self._spec = None
        self._trim_history()

    def _trim_history(self) -> None:
        if self._first_speech is None:
            keep = self._n(self.config.pre_roll_ms)
            if len(self._history) > keep:
                del self._history[: len(self._history) - keep]
