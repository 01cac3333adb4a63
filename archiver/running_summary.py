"""A call's summary kept up to date event by event, in stream order. Pure: no I/O.

`summary.summarize` defines the `calls` row from a call's whole history; recomputing it after
every batch costs the call's length each time. A `RunningSummary` folds each new event into
the figures instead, at a cost proportional to the event, and gives the same row as
`summarize` of the events it has folded (`tests/unit/test_archiver_running_summary.py` checks
it on recorded calls). It only folds in stream order: an event that is not after all those it
has (a repeat, or one that arrived late) is refused, and the caller rebuilds it from the
stored history, where order and repeats are resolved as `summarize` resolves them.

It also notes which per-message times (bot lines, first-frame waits) changed since they were
last taken, so that only those are written again.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable

from archiver.summary import FRAME_S, NO_INPUT_PHRASES, BotLine, CallSummary, Stored
from events import schemas


class RunningSummary:
    def __init__(self, call_id: str) -> None:
        self.row = CallSummary(call_id, 0.0)
        self._started = False  # a `started` event set the call's start (else its first ts)
        self._first_ts: float | None = None
        self._newest_claim = 0  # the newest brain epoch so far
        self._playback_start: dict[str, float] = {}  # utterance -> its first playback.started
        self._playback_end: dict[str, tuple[int, bool]] = {}  # utterance -> frames, interrupted
        self._spoken_over: set[str] = set()
        self._says: defaultdict[str, list[int]] = defaultdict(list)  # utterance -> say seqs
        self._utterance_of: dict[int, str] = {}  # say seq -> utterance
        # Waits: the says since the last decision, and for each decision that may have one, the
        # end of speech and the utterances whose first frame ends it (keyed in stream order).
        self._window: list[schemas.Say] = []
        self._waiting: dict[int, tuple[float, list[str]]] = {}
        self._waits: dict[int, float | None] = {}
        self._waited_on: defaultdict[str, list[int]] = defaultdict(list)  # utterance -> decisions
        self._changed_lines: set[int] = set()
        self._changed_waits: set[int] = set()

    @classmethod
    def of(cls, call_id: str, history: Iterable[Stored]) -> RunningSummary:
        """Built from stored events in any order, repeats counted once."""
        out = cls(call_id)
        for s in sorted({s.seq: s for s in history}.values(), key=lambda s: s.seq):
            out.add(s)
        return out

    def add_new(self, new: Iterable[Stored]) -> bool:
        """Fold in a batch's new events (in any order among themselves); False if one is not
        after those already folded: the summary is then partial and must be rebuilt."""
        return all(self.add(s) for s in sorted(new, key=lambda s: s.seq))

    @property
    def events(self) -> int:
        return self.row.events

    @property
    def last_seq(self) -> int:
        return self.row.last_seq

    def add(self, s: Stored) -> bool:
        """Fold in an event after all those already folded; False (and nothing changes) if it
        is not after them."""
        if s.seq <= self.row.last_seq:
            return False
        self.row.events += 1
        self.row.last_seq = s.seq
        self._start(s.event)
        match s.event:
            case schemas.Ended() as e:
                self.row.ended_ts, self.row.duration_s = e.ts, e.duration_s
                self.row.end_reason, self.row.end_outcome = e.reason, e.outcome
                self.row.underruns = e.underruns
                if e.outcome.startswith("transfer"):
                    self.row.transfer_target = e.outcome.partition(":")[2] or "technicians"
            case schemas.Hangup(by=by):
                self.row.hung_up_by = by
            case schemas.Error():
                self.row.provider_errors += 1
            case schemas.Claimed(service="brain", epoch=epoch):
                self._newest_claim = max(self._newest_claim, epoch)
            case schemas.Decision() as d:
                self._decision(s.seq, d)
            case schemas.Say() as say:
                self._say(s.seq, say)
            case schemas.PlaybackStarted(utterance_id=u, ts=ts, origin=origin):
                if origin == "edge":
                    self.row.hold_prompts += 1  # a cached phrase the edge played: a slow pipeline
                if u not in self._playback_start:
                    self._playback_start[u] = ts
                    self._line_changed(u)
                    for decision in self._waited_on.get(u, ()):
                        self._wait(decision)
            case schemas.PlaybackFinished(utterance_id=u, frames=n):
                self._playback_end[u] = (n, False)
                self._line_changed(u)
            case schemas.PlaybackInterrupted(utterance_id=u, frames=n, reason=why):
                self._playback_end[u] = (n, True)
                self._line_changed(u)
                if not why.startswith("hangup"):
                    self._spoken_over.add(u)
            case schemas.BargeIn(utterance_id=u):
                self._spoken_over.add(u)
        self.row.talk_overs = len(self._spoken_over)
        return True

    def summary(self) -> CallSummary:
        """The row as `summarize` gives it (the object is this summary's own: read it only)."""
        self._figures()
        for seq in self._changed_lines:
            self._render_line(seq)
        return self.row

    def take_changes(self) -> tuple[dict[int, BotLine], dict[int, float]]:
        """The bot lines and first-frame waits that changed since the last call."""
        self._figures()
        lines = {seq: self._render_line(seq) for seq in sorted(self._changed_lines)}
        waits = {
            seq: self.row.first_frame_ms[seq]
            for seq in sorted(self._changed_waits)
            if seq in self.row.first_frame_ms
        }
        self._changed_lines.clear()
        self._changed_waits.clear()
        return lines, waits

    # --- the parts -----------------------------------------------------------------------

    def _start(self, event: schemas.Base) -> None:
        """The call's start: its first `started`, else the earliest event so far. Bot lines are
        counted from it: when it moves, they all do."""
        if self._started:
            return
        if isinstance(event, schemas.Started):
            self._started = True
            self.row.caller = event.caller
            t0 = event.ts
        else:
            self._first_ts = event.ts if self._first_ts is None else min(self._first_ts, event.ts)
            t0 = self._first_ts
        if t0 != self.row.started_ts:
            self.row.started_ts = t0
            self._changed_lines.update(self.row.bot_lines)

    def _decision(self, seq: int, d: schemas.Decision) -> None:
        window, self._window = self._window, []
        # A decision of an owner already replaced (its epoch below the newest brain claim
        # before it) did not happen: see `summary.live_decisions`.
        if 0 < d.epoch < self._newest_claim:
            return
        row, snap = self.row, d.snapshot
        row.final_state = d.state_to
        row.outcome = snap.get("outcome") or row.outcome
        row.customer_id = snap.get("customer_id") or row.customer_id
        row.phone = snap.get("phone") or row.phone
        row.category = snap.get("category") or row.category
        row.turns += d.text is not None
        row.caller_repeats += d.intent == "repeat"
        latency = d.latency
        if latency is None or latency.say_ms is None or not window:
            return
        end_of_speech = window[-1].ts - latency.say_ms / 1000
        utterances = [x.utterance_id for x in window]
        self._waiting[seq] = (end_of_speech, utterances)
        self._waits[seq] = None  # its place in stream order, which the sum of waits follows
        for u in utterances:
            self._waited_on[u].append(seq)
        self._wait(seq)

    def _wait(self, decision: int) -> None:
        end_of_speech, utterances = self._waiting[decision]
        played = [self._playback_start[u] for u in utterances if u in self._playback_start]
        if not played:
            return
        wait_ms = max(0.0, (min(played) - end_of_speech) * 1000)
        self.row.first_frame_ms[decision] = round(wait_ms, 1)
        self._waits[decision] = wait_ms / 1000
        self._changed_waits.add(decision)

    def _say(self, seq: int, say: schemas.Say) -> None:
        self._window.append(say)
        self.row.repeat_prompts += say.phrase == "repeat"
        self.row.no_input_prompts += say.phrase in NO_INPUT_PHRASES
        self.row.hold_prompts += say.phrase == "hold"
        self._says[say.utterance_id].append(seq)
        self._utterance_of[seq] = say.utterance_id
        if say.utterance_id in self._playback_start:
            self._changed_lines.add(seq)

    def _line_changed(self, utterance: str) -> None:
        if utterance in self._playback_start:
            self._changed_lines.update(self._says.get(utterance, ()))

    def _render_line(self, seq: int) -> BotLine:
        """A say's time on the line, with the arithmetic of `summary._line`."""
        u = self._utterance_of[seq]
        start = self._playback_start[u] - self.row.started_ts
        frames, cut = self._playback_end.get(u, (0, False))
        line = BotLine(round(start, 3), round(start + frames * FRAME_S, 3), cut)
        self.row.bot_lines[seq] = line
        return line

    def _figures(self) -> None:
        """The figures over all waits, summed in stream order as `summarize` does."""
        waits = [w for w in self._waits.values() if w is not None]
        self.row.dead_air_s = round(sum(waits), 3)
        self.row.max_wait_s = round(max(waits), 3) if waits else None


class RunningSummaries:
    """The running summaries of the calls an archiver wrote last, the least recently written
    dropped beyond `keep`: a call not kept is rebuilt from its stored events when it comes back
    (as after a restart). Each is only as good as what was committed: forget a batch's calls
    when its transaction did not commit."""

    def __init__(self, keep: int = 2000) -> None:
        self._keep = keep
        self._by_call: OrderedDict[str, RunningSummary] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_call)

    def get(self, call_id: str) -> RunningSummary | None:
        return self._by_call.get(call_id)

    def put(self, running: RunningSummary) -> None:
        call_id = running.row.call_id
        self._by_call[call_id] = running
        self._by_call.move_to_end(call_id)
        while len(self._by_call) > self._keep:
            self._by_call.popitem(last=False)

    def forget(self, call_ids: Iterable[str]) -> None:
        for call_id in call_ids:
            self._by_call.pop(call_id, None)
