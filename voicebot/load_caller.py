"""`voicebot call --calls N`: N concurrent AudioSocket calls placed as Asterisk would.

Each call connects (all together, or spread over `--ramp` seconds), sends its UUID, then one
320-byte slin frame every 20 ms for the whole call (silence between its lines), speaks the
script's lines when the bot's turn is over, sends DTMF as kind 0x03 and hangs up by closing TCP.
One timer drives every call (absolute deadlines, missed ticks skipped rather than burst); no
call has a task or a sleep of its own, so at 200 calls the caller's own loop stays light (its
tick lateness is measured and printed with the figures). The calls' 20 ms clocks are spread over
`phases` offsets (the timer fires every 20/phases ms and sends the frames of one group): the
channels of an Asterisk are not in step with one another nor with the edge's ticker. With every
call on one clock, a run measured a single offset between the caller's frames and the edge's,
and turn latency, which moves on the edge's 20 ms grid, shifted by up to 20 ms from one run to
the next.

Each received audio frame is stamped (time.monotonic(), at the read that completed it, as
bench/loadcaller.c does) for the pacing figures, and its level decides whether the bot is
speaking, for the turn figures (voicebot/load_figures.py has the definitions).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from edge import framing
from events.audio import SILENCE
from voicebot.caller import BOT_RUN_JOIN_S, Line, TurnTiming, turn_timings
from voicebot.load_figures import CallPacing, call_pacing
from voicebot.load_script import SILENCE_MESSAGE, PreparedStep

log = logging.getLogger("voicebot.load")

PERIOD_S = 0.020
DTMF_GAP_S = 0.35  # Asterisk reports each digit at the end of its tone
MAX_WRITE_BUFFER = 64 * 1024  # the server stopped reading us


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    host: str = "127.0.0.1"
    port: int = 9090
    calls: int = 1
    duration_s: float = 30.0  # from the last call's connection to the hang-up of all
    ramp_s: float = 0.0  # connections spread over this; 0: all together
    warmup_s: float = 1.0  # pacing is measured after this (call set-up is not steady state)
    end_of_turn_s: float = 0.8  # the bot quiet this long after speaking: its turn is over
    turn_timeout_s: float = 30.0
    voice_dbfs: float = -45.0  # a bot frame louder than this is speech
    connect_timeout_s: float = 5.0
    phases: int = 4  # call clocks spread over this many offsets of the 20 ms period

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ValueError("--calls must be at least 1")
        if self.duration_s <= self.warmup_s:
            raise ValueError(
                f"--duration ({self.duration_s:g} s) must exceed the warm-up ({self.warmup_s:g} s)"
            )
        if self.ramp_s < 0:
            raise ValueError("--ramp must not be negative")
        if not 1 <= self.phases <= 20:
            raise ValueError(f"--phases must be 1 to 20 (ms apart at most 20), got {self.phases}")


@dataclass
class LegResult:
    call_id: str
    outcome: str  # completed | ended_by_bot | held | dropped
    reason: str
    connect_s: float  # when it connected, seconds after the run started
    duration_s: float
    pacing: CallPacing
    turns: list[TurnTiming]
    lines: list[Line]
    bot_speech: list[list[float]]
    wall0: float  # time.time() at connect: the call's clock against event timestamps
    errors: list[str] = field(default_factory=list)


class Leg(asyncio.Protocol):
    """One call: a small state machine the shared ticker advances, and a frame parser."""

    def __init__(
        self, run: LoadRun, call_id: str, steps: Sequence[PreparedStep], phase: int = 0
    ) -> None:
        self.run = run
        self.opts = run.opts
        self.call_id = call_id
        self.phase = phase  # which of the timer's groups sends this call's frames
        self.steps = list(steps)
        self.transport: asyncio.Transport | None = None
        self.t0 = 0.0  # monotonic at connect: the clock of lines and bot stretches
        self.wall0 = 0.0
        self.t_end: float | None = None
        self.arrivals = array("d")
        self.lines: list[Line] = []
        self.bot_speech: list[list[float]] = []
        self.errors: list[str] = []
        self.outcome = ""
        self.reason = ""
        self.hangup_received = False
        self._buf = bytearray()
        # A frame of n samples is speech when the sum of its squared samples exceeds this.
        self._voice_power = (32768.0**2) * 10 ** (self.opts.voice_dbfs / 10)
        self._last_voice = 0.0
        self._voiced_since_mark = False
        self._step = 0
        self._state = "turn"
        self._since = 0.0
        self._sending: PreparedStep | None = None
        self._line: Line | None = None
        self._pos = 0
        self._digits = ""
        self._digit_at = 0.0
        self._until = 0.0

    # --- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self._since = self.t0
        self.transport.write(framing.encode_uuid(uuid.UUID(self.call_id).bytes))
        if self.steps and self.steps[0].step.verb == "bargein":
            self._next_step(self.t0)  # cutting into the welcome is the point
        self.run.joined(self)

    def data_received(self, data: bytes) -> None:
        t = time.monotonic()
        buf = self._buf
        buf += data
        n, pos = len(buf), 0
        while n - pos >= 3:
            kind = buf[pos]
            end = pos + 3 + (buf[pos + 1] << 8 | buf[pos + 2])
            if end > n:
                break
            if 0x10 <= kind <= 0x18:
                self.arrivals.append(t)
                payload = buf[pos + 3 : end]
                if payload != SILENCE and self._loud(payload):
                    self._bot_voiced(t)
            elif kind == framing.Kind.HANGUP:
                self.hangup_received = True
            else:
                self.errors.append(f"the server sent kind 0x{kind:02x}: Asterisk hangs up")
                self._close("dropped", "protocol error")
                return
            pos = end
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.t_end is None:
            self.t_end = time.monotonic()
        if self.outcome:
            return  # we hung up
        if self.hangup_received:
            # The script said all its lines (the last one's answer may be the goodbye).
            done = self._step >= len(self.steps) and self._state != "send"
            self.outcome = "completed" if done else "ended_by_bot"
            self.reason = "the bot hung up" + ("" if done else " before the script's end")
        else:
            self.outcome = "dropped"
            self.reason = f"closed without a hang-up message{f' ({exc})' if exc else ''}"
        self.run.left(self)

    def _close(self, outcome: str, reason: str) -> None:
        if self.outcome:
            return
        self.outcome, self.reason = outcome, reason
        self.t_end = time.monotonic()
        if self.transport is not None:
            self.transport.close()
        self.run.left(self)

    def hang_up(self, outcome: str, reason: str) -> None:
        """The caller hangs up: a TCP close, as Asterisk does."""
        self._close(outcome, reason)

    # --- the bot's voice -----------------------------------------------------------------

    def _loud(self, payload: bytearray) -> bool:
        x = np.frombuffer(payload, "<i2").astype(np.float32)
        return float(x @ x) > self._voice_power * len(x)

    def _bot_voiced(self, t: float) -> None:
        self._last_voice = t
        self._voiced_since_mark = True
        rel = t - self.t0
        runs = self.bot_speech
        if runs and rel - runs[-1][1] <= BOT_RUN_JOIN_S:
            runs[-1][1] = rel + PERIOD_S
        else:
            runs.append([rel, rel + PERIOD_S])

    # --- the script, one tick at a time ----------------------------------------------------

    def tick(self, now: float) -> None:
        if self.outcome or self.transport is None:
            return
        self._advance(now)
        if self.outcome:
            return
        self.transport.write(self._frame(now))
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.errors.append("the server stopped reading our frames")
            self._close("dropped", "server not reading")

    def _frame(self, now: float) -> bytes:
        sending = self._sending
        if sending is None or sending.line is None or self._line is None:
            return SILENCE_MESSAGE
        line, pos = sending.line, self._pos
        rel = now - self.t0
        if pos == 0:
            self._line.start_s = rel
        if pos == line.last_voiced:
            # A phone sends a frame once its 20 ms are captured: the speech ended as its last
            # voiced frame leaves (a recogniser's "300 ms after the end" counts from here).
            self._line.end_s = rel
        self._pos += 1
        if self._pos >= len(line.messages):
            self._sending = None
            if sending.step.verb == "bargein":
                self._state = "next"
            else:
                self._wait_turn(now)
        return line.messages[pos]

    def _wait_turn(self, now: float) -> None:
        self._state, self._since, self._voiced_since_mark = "turn", now, False

    def _advance(self, now: float) -> None:
        opts = self.opts
        while True:
            match self._state:
                case "turn":
                    quiet = now - self._last_voice > opts.end_of_turn_s
                    if self._voiced_since_mark and quiet:
                        self._next_step(now)
                        continue
                    if now - self._since > opts.turn_timeout_s:
                        self.errors.append(f"the bot said nothing for {opts.turn_timeout_s:.0f} s")
                        self._next_step(now)
                        continue
                case "voice":  # a barge-in speaks as soon as the bot does
                    timed_out = now - self._since > opts.turn_timeout_s
                    if self._voiced_since_mark or timed_out:
                        self._speak(self.steps[self._step - 1], now)
                case "dtmf":
                    self._dtmf(now)
                case "wait":
                    if now >= self._until:
                        self._next_step(now)
                        continue
                case "next":
                    self._next_step(now)
                    continue
                case "final":  # the script is done: the bot should end the call
                    if now - self._since > opts.turn_timeout_s:
                        self.hang_up("completed", "the bot did not end the call: caller hung up")
            return

    def _next_step(self, now: float) -> None:
        if self._step >= len(self.steps):
            self._state, self._since = "final", now
            return
        prepared = self.steps[self._step]
        self._step += 1
        step = prepared.step
        match step.verb:
            case "say" | "wav":
                self._speak(prepared, now)
            case "bargein":
                self._state, self._since, self._voiced_since_mark = "voice", now, False
            case "dtmf":
                self._line = Line("dtmf", step.arg)
                self.lines.append(self._line)
                self._state, self._digits, self._digit_at = "dtmf", step.arg, now
            case "wait":
                self._state, self._until = "wait", now + float(step.arg)
            case "hangup":
                self.hang_up("completed", "the script hung up")

    def _speak(self, prepared: PreparedStep, now: float) -> None:
        assert prepared.line is not None
        self._line = Line(prepared.step.verb, prepared.line.text)
        self.lines.append(self._line)
        self._sending, self._pos, self._state = prepared, 0, "send"

    def _dtmf(self, now: float) -> None:
        if now < self._digit_at or self.transport is None or self._line is None:
            return
        digit, self._digits = self._digits[0], self._digits[1:]
        self.transport.write(framing.encode_dtmf(digit))
        rel = now - self.t0
        if self._line.start_s is None:
            self._line.start_s = rel
        self._line.end_s = rel
        if self._digits:
            self._digit_at = now + DTMF_GAP_S
        else:
            self._wait_turn(now)

    # --- result ----------------------------------------------------------------------------

    def result(self, run_t0: float, w0: float, w1: float) -> LegResult:
        end = self.t_end if self.t_end is not None else w1
        # A call the bot ended on purpose is measured up to its end; a dropped one up to the
        # window's end, so the frames it never got count as missing.
        window_end = w1 if self.outcome == "dropped" else min(w1, end)
        inside = [t for t in self.arrivals if w0 <= t < window_end]
        duration = max(0.0, end - self.t0) if self.t0 else 0.0
        return LegResult(
            call_id=self.call_id,
            outcome=self.outcome or "held",
            reason=self.reason,
            connect_s=(self.t0 - run_t0) if self.t0 else -1.0,
            duration_s=duration,
            pacing=call_pacing(inside, w0, max(w0, window_end)),
            turns=turn_timings(self.lines, self.bot_speech, duration) if self.t0 else [],
            lines=self.lines,
            bot_speech=self.bot_speech,
            wall0=self.wall0,
            errors=self.errors,
        )


@dataclass
class RunResult:
    options: LoadOptions
    legs: list[LegResult]
    tick_lateness_s: list[float]  # the caller's own ticker, inside the window
    ticks_skipped: int
    window_s: float


class LoadRun:
    """Places the calls, ticks them all from one timer, hangs them up at the end."""

    def __init__(
        self,
        opts: LoadOptions,
        steps: Sequence[PreparedStep],
        call_ids: Sequence[str] | None = None,
    ) -> None:
        self.opts = opts
        ids = list(call_ids or [])
        ids += [str(uuid.uuid4()) for _ in range(opts.calls - len(ids))]
        self.legs = [
            Leg(self, call_id, steps, phase=i % opts.phases)
            for i, call_id in enumerate(ids[: opts.calls])
        ]
        self._live: list[dict[int, Leg]] = [{} for _ in range(opts.phases)]
        self._tick_lateness: list[float] = []
        self._w0 = self._w1 = 0.0

    def joined(self, leg: Leg) -> None:
        self._live[leg.phase][id(leg)] = leg

    def left(self, leg: Leg) -> None:
        self._live[leg.phase].pop(id(leg), None)

    async def run(self) -> RunResult:
        loop = asyncio.get_running_loop()
        opts = self.opts
        t0 = time.monotonic()
        self._w0 = t0 + opts.ramp_s + opts.warmup_s
        self._w1 = t0 + opts.ramp_s + opts.duration_s
        ticker = _Ticker(loop, t0, self._tick, phases=opts.phases)
        connects = [
            asyncio.create_task(self._connect(leg, t0 + i * opts.ramp_s / opts.calls))
            for i, leg in enumerate(self.legs)
        ]
        ticker.start()
        try:
            await asyncio.gather(*connects)
            await asyncio.sleep(max(0.0, self._w1 - time.monotonic()))
        finally:
            ticker.stop()
            for task in connects:
                task.cancel()
            for leg in [leg for group in self._live for leg in group.values()]:
                leg.hang_up("held", "the run ended")
            await asyncio.sleep(0.05)  # let connection_lost callbacks run
        return RunResult(
            options=opts,
            legs=[leg.result(t0, self._w0, self._w1) for leg in self.legs],
            tick_lateness_s=self._tick_lateness,
            ticks_skipped=ticker.skipped,
            window_s=self._w1 - self._w0,
        )

    async def _connect(self, leg: Leg, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.opts.connect_timeout_s):
                await loop.create_connection(lambda: leg, self.opts.host, self.opts.port)
        except (OSError, TimeoutError) as e:
            leg.outcome, leg.reason = "dropped", f"connect: {e!r}"
            leg.errors.append(leg.reason)

    def _tick(self, now: float, lateness: float, phase: int) -> None:
        if self._w0 <= now < self._w1:
            self._tick_lateness.append(lateness)
        for leg in list(self._live[phase].values()):
            leg.tick(now)


class _Ticker:
    """One timer for every call: absolute deadlines on time.monotonic()'s clock, every
    20/`phases` ms, each tick for the next phase's calls; run a whole 20 ms period late, it
    skips the rounds it missed (no burst), as the edge's does."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        t0: float,
        on_tick: Callable[[float, float, int], None],
        *,
        phases: int = 1,
    ) -> None:
        self.loop = loop
        self.phases = phases
        self.period = PERIOD_S / phases
        self.deadline = t0 + self.period
        self.phase = 0
        self.on_tick = on_tick
        self.skipped = 0
        self._handle: asyncio.TimerHandle | None = None
        # loop.time() and time.monotonic() read the same clock on Linux (asyncio and uvloop);
        # the offset guards against a loop whose clock starts elsewhere.
        self._offset = loop.time() - time.monotonic()

    def start(self) -> None:
        self._handle = self.loop.call_at(self.deadline + self._offset, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        now = time.monotonic()
        self.on_tick(now, now - self.deadline, self.phase)
        self.deadline += self.period
        self.phase = (self.phase + 1) % self.phases
        # A group's tick a little late runs at once (the next timer fires immediately); a
        # whole 20 ms round behind, every group skips it (no burst), as the edge's does.
        behind = time.monotonic() - self.deadline
        if behind >= PERIOD_S:
            rounds = int(behind // PERIOD_S)
            self.deadline += rounds * PERIOD_S
            self.skipped += rounds
        self._handle = self.loop.call_at(self.deadline + self._offset, self._fire)
