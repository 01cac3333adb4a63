"""The load caller's figures, from what each call received and lived through. Pure.

Pacing uses bench/loadcaller.c's definitions, so the two callers can be compared on one server
(per call, over the frames that arrived inside the measurement window):

  gap_i      = arrival_i - arrival_{i-1}
  lateness_i = max(0, gap_i - 20 ms): what a peer without a jitter buffer turns into a hole
  burst      = gap_i < 5 ms: two frames almost together
  gap        = gap_i >= 30 ms: a frame half a period or more late
  deficit    = frames real time should have carried minus frames received: the span from the
               first to the last frame in whole periods, plus any silence of more than a period
               at the window's start or end (a call that stalls counts); summed over the calls,
               never negative, in % of the expected frames.

Percentiles pool every call's values and take the value at index int(q * n), as the C caller.
Turn figures come from `voicebot.caller.turn_timings` (end of the caller's line to the first
voiced bot frame; dead air: every silence the caller sat through waiting for the bot).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PERIOD_S = 0.020
BURST_S = 0.005
GAP_S = 0.030


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The value at index int(q * n) of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _periods(seconds: float) -> int:
    return round(seconds / PERIOD_S)


@dataclass(frozen=True)
class CallPacing:
    """One call's received frames inside the window."""

    frames: int
    expected: int
    lateness: tuple[float, ...]  # seconds, one per gap between two frames
    gaps: int
    bursts: int

    @property
    def deficit(self) -> int:
        """Signed: a call's jitter at the window's edges may give it one frame more."""
        return self.expected - self.frames


def call_pacing(arrivals: Sequence[float], w0: float, w1: float) -> CallPacing:
    """`arrivals`: the call's audio frame arrival times (seconds, any clock) inside [w0, w1)."""
    if not arrivals:
        return CallPacing(0, _periods(w1 - w0), (), 0, 0)
    late: list[float] = []
    gaps = bursts = 0
    for a, b in itertools.pairwise(arrivals):
        gap = b - a
        late.append(max(0.0, gap - PERIOD_S))
        bursts += gap < BURST_S
        gaps += gap >= GAP_S
    expected = _periods(arrivals[-1] - arrivals[0]) + 1
    head, tail = _periods(arrivals[0] - w0), _periods(w1 - arrivals[-1])
    expected += max(0, head - 1) + max(0, tail - 1)
    return CallPacing(len(arrivals), expected, tuple(late), gaps, bursts)


@dataclass(frozen=True)
class PacingSummary:
    calls: int
    frames: int
    lateness_p50_ms: float | None
    lateness_p99_ms: float | None
    lateness_max_ms: float | None
    gaps: int
    bursts: int
    deficit_frames: int
    deficit_pct: float


def summarise_pacing(per_call: Iterable[CallPacing]) -> PacingSummary:
    calls = list(per_call)
    late = sorted(x for c in calls for x in c.lateness)
    expected = sum(c.expected for c in calls)
    deficit = max(0, sum(c.deficit for c in calls))

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 3)

    return PacingSummary(
        calls=len(calls),
        frames=sum(c.frames for c in calls),
        lateness_p50_ms=ms(percentile(late, 0.50)),
        lateness_p99_ms=ms(percentile(late, 0.99)),
        lateness_max_ms=ms(late[-1] if late else None),
        gaps=sum(c.gaps for c in calls),
        bursts=sum(c.bursts for c in calls),
        deficit_frames=deficit,
        deficit_pct=round(100 * deficit / expected, 3) if expected else 0.0,
    )


@dataclass(frozen=True)
class Turn:
    """One answered caller line, as the load caller saw it (seconds)."""

    call: str
    line: int  # the line's index in the call (0: the opening, connect -> the welcome)
    latency_s: float | None  # end of the line -> first voiced bot frame
    waits_s: tuple[float, ...]  # dead air after the line
    answer: str = ""  # phrase | text: what the bot answered with (from its `say`), if known
    stt_s: float | None = None  # end of the line -> its final transcript was published
    brain_s: float | None = None  # final transcript -> the answer's `say`
    out_s: float | None = None  # `say` -> first voiced bot frame heard


@dataclass(frozen=True)
class ProviderDelays:
    """What the providers themselves take per turn: STT final after the end of speech, the
    LLM's answer, the speech provider's first audio (text answers only: cached phrases play
    with no provider call)."""

    stt_s: float = 0.0
    llm_s: float = 0.0
    tts_s: float = 0.0

    def of(self, turn: Turn) -> float:
        return self.stt_s + self.llm_s + (self.tts_s if turn.answer == "text" else 0.0)


@dataclass(frozen=True)
class LatencySummary:
    turns: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def summarise_latency(values_s: Iterable[float]) -> LatencySummary:
    v = sorted(values_s)

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 1)

    return LatencySummary(
        turns=len(v),
        p50_ms=ms(percentile(v, 0.50)),
        p95_ms=ms(percentile(v, 0.95)),
        p99_ms=ms(percentile(v, 0.99)),
        max_ms=ms(v[-1] if v else None),
    )


def pipeline_added(turns: Iterable[Turn], delays: ProviderDelays) -> list[float]:
    """Turn latency minus the providers' own delays, over spoken lines answered by the pipeline
    (the opening welcome has no provider on its path and is left out)."""
    return [
        t.latency_s - delays.of(t)
        for t in turns
        if t.line > 0 and t.latency_s is not None and t.answer
    ]


@dataclass
class Outcomes:
    """How the calls ended."""

    placed: int = 0
    completed: int = 0  # the script ran to its end (the bot hung up, or the script did)
    held: int = 0  # still up, mid-script, when the run ended
    dropped: int = 0  # refused, or closed by the server without a hang-up message
    reasons: dict[str, int] = field(default_factory=dict)  # why calls dropped


@dataclass(frozen=True)
class Breakdown:
    answer: str  # phrase | text | "" (unknown)
    stt_s: float | None
    brain_s: float | None
    out_s: float | None


def breakdown(
    line_end: float, voiced: float, finals: Sequence[float], says: Sequence[tuple[float, str]]
) -> Breakdown:
    """Split the wait after a line (wall clock: `line_end` -> first voiced bot frame `voiced`)
    at the first final transcript after the line and the first `say` after that final; the
    answer is unknown when either is missing or the bot spoke before the say (a hold phrase)."""
    final = next((t for t in sorted(finals) if line_end < t <= voiced), None)
    if final is None:
        return Breakdown("", None, None, None)
    said = next(((t, kind) for t, kind in sorted(says) if final <= t <= voiced), None)
    if said is None:
        return Breakdown("", final - line_end, None, None)
    return Breakdown(said[1], final - line_end, said[0] - final, voiced - said[0])
