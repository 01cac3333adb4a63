"""`voicebot call`: a test caller that behaves like Asterisk's AudioSocket() application.

It sends the UUID first, then one 320-byte slin frame every 20 ms (silence between its lines,
as a connected phone does), speaks scripted lines synthesized offline (or WAV files), sends
DTMF, waits for the bot to finish speaking before its next line (or barges in when told),
records the bot's audio to a WAV file and hangs up by closing TCP. With NATS reachable it also
prints what the bot said and understood, live.

The steps are a fixed script, or a `StepSource` that picks each next line once the bot's turn
is over (the quality harness answers the question the bot asked). Either way the result holds
the caller's side of the timing: when each line started and when its speech ended, the bot's
voiced stretches, and from those (`turn_timings`) the wait for the bot after each line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time
import uuid
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np

from edge import framing
from events.audio import FRAME_BYTES, SAMPLE_RATE, SILENCE

# `voicebot call`'s default: the sample dialog recorded with an MBROLA voice, the same on every
# machine (with no MBROLA installed, espeak-ng's own voice is badly recognised offline).
SAMPLE_CALL = (
    Path(__file__).resolve().parent.parent / "assets" / "sample_call" / "sample_dialog.txt"
)

SAMPLE_DIALOG = """\
# The sample dialog of the original README (caller side), as text to synthesize.
say: Bonjour, j'ai un problème avec ma connexion.
say: Pierre Dupont, 06 12 34 56 78.
say: Internet.
say: D'accord, je vais essayer.
say: Oui, ça marche !
"""


class ScriptError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    verb: str  # say | bargein | wav | dtmf | wait | hangup
    arg: str = ""
    line: int = 0
    shown: str = ""  # what to print for a `wav:` step (the words it holds)
    tag: str = ""  # what the line answers (a dialog step), carried into the result's lines


class StepSource(Protocol):
    """Chooses the caller's next step once the bot's turn is over; None ends the script."""

    async def next_step(self) -> Step | None: ...


def parse_script(text: str, base_dir: Path | None = None) -> list[Step]:
    """Parse a caller script; `wav:` paths are relative to `base_dir` (the script's folder)."""
    steps: list[Step] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        verb, _, arg = line.partition(":")
        verb, arg = verb.strip().lower(), arg.strip()
        if verb not in ("say", "bargein", "wav", "dtmf", "wait", "hangup"):
            raise ScriptError(
                f"line {n}: unknown step {verb!r} (say, bargein, wav, dtmf, wait, hangup)"
            )
        if verb in ("say", "bargein", "wav", "dtmf") and not arg:
            raise ScriptError(f"line {n}: {verb} needs an argument")
        if verb == "dtmf" and any(c not in "0123456789*#ABCD" for c in arg):
            raise ScriptError(f"line {n}: DTMF digits are 0-9 * # A-D, got {arg!r}")
        if verb == "wait":
            try:
                float(arg)
            except ValueError:
                raise ScriptError(f"line {n}: wait takes seconds, got {arg!r}") from None
        shown = ""
        if verb == "wav":
            path, _, shown = (part.strip() for part in arg.partition("|"))
            full = (
                base_dir / path
                if base_dir is not None and not Path(path).is_absolute()
                else Path(path)
            )
            if not full.is_file():
                raise ScriptError(f"line {n}: no WAV file at {full}")
            arg = str(full)
        steps.append(Step(verb, arg, n, shown))
    return steps


def read_wav_8k(path: Path) -> bytes:
    """A WAV file as 8 kHz s16le mono (resampled with PyAV when needed)."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        data = w.readframes(w.getnframes())
    if (rate, channels, width) == (SAMPLE_RATE, 1, 2):
        return data
    if width != 2:
        raise ScriptError(f"{path}: only 16-bit WAV files are supported")
    samples = np.frombuffer(data, "<i2").reshape(-1, channels).mean(axis=1)
    positions = np.arange(0, len(samples), rate / SAMPLE_RATE)
    out = np.interp(positions, np.arange(len(samples)), samples)
    return bytes(out.astype("<i2").tobytes())


def rms_dbfs(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float32)
    if not len(x):
        return -120.0
    rms = float(np.sqrt(np.mean(x * x)))
    return float(20 * np.log10(max(rms, 1e-3) / 32768))


SPEECH_DBFS = -50.0  # a frame of the caller's own (clean) line above this is speech
BOT_RUN_JOIN_S = 0.06  # voiced bot frames closer than this belong to one stretch


@dataclass
class Line:
    """One thing the caller said (or keyed), on the call's clock (seconds since connect)."""

    kind: str  # say | bargein | wav | dtmf
    text: str
    tag: str = ""
    start_s: float | None = None  # its first frame (first digit) written
    end_s: float | None = None  # its last voiced frame played out (last digit sent)


@dataclass(frozen=True)
class TurnTiming:
    """What the caller lived through after one line (or, first, after connecting).

    `latency_s`: end of the caller's speech -> first voiced bot frame, None when the bot never
    spoke in the window or was already speaking when the caller stopped (`talked_over`).
    `waits_s`: the silences the caller sat through waiting for the bot: the latency, then each
    gap of at least `min_gap_s` between the bot's voiced stretches before the caller's next line.
    """

    line: Line | None  # None: the opening (connect -> the welcome)
    latency_s: float | None
    waits_s: tuple[float, ...]
    talked_over: bool  # the bot's voice overlapped the caller's line
    answered: bool  # the bot spoke at all before the caller's next line (or the end)


@dataclass
class CallResult:
    call_id: str
    frames_in: int = 0
    bot_frames_voiced: int = 0
    hung_up_by: str = ""  # bot | caller
    duration_s: float = 0.0
    turns: int = 0
    errors: list[str] = field(default_factory=list)
    started_wall: float = 0.0  # time.time() at connect: the call's clock against event `ts`
    lines: list[Line] = field(default_factory=list)
    bot_speech: list[list[float]] = field(default_factory=list)  # voiced [start, end] stretches

    def turn_timings(self, min_gap_s: float = 0.5) -> list[TurnTiming]:
        return turn_timings(self.lines, self.bot_speech, self.duration_s, min_gap_s=min_gap_s)


def turn_timings(
    lines: Sequence[Line],
    bot_speech: Sequence[Sequence[float]],
    call_end_s: float,
    *,
    min_gap_s: float = 0.5,
) -> list[TurnTiming]:
    """Per line, the caller's wait for the bot until its next line; pure, for the harness and
    load callers. Lines that never went out (the call ended first) are skipped."""
    sent = [ln for ln in lines if ln.start_s is not None and ln.end_s is not None]
    out: list[TurnTiming] = []
    marks: list[tuple[Line | None, float, float]] = [(None, 0.0, 0.0)]
    marks += [(ln, ln.start_s or 0.0, ln.end_s or 0.0) for ln in sent]
    for i, (line, start, end) in enumerate(marks):
        until = marks[i + 1][1] if i + 1 < len(marks) else call_end_s
        talked_over = line is not None and any(a < end and b > start for a, b in bot_speech)
        runs = [(a, b) for a, b in bot_speech if b > end and a < until]
        if not runs:
            wait = max(until - end, 0.0)
            out.append(TurnTiming(line, None, (wait,) if wait > 0 else (), talked_over, False))
            continue
        latency = None if runs[0][0] < end else runs[0][0] - end
        gaps = [b0 - a1 for (_, a1), (b0, _) in itertools.pairwise(runs)]
        waits = ([latency] if latency is not None else []) + [g for g in gaps if g >= min_gap_s]
        out.append(TurnTiming(line, latency, tuple(waits), talked_over, True))
    return out


class Caller:
    def __init__(
        self,
        host: str,
        port: int,
        steps: Sequence[Step] | StepSource,
        *,
        call_id: str | None = None,
        synth: Callable[[str], bytes],
        record: Path | None = None,
        out: TextIO = sys.stdout,
        end_of_turn_s: float = 0.8,
        turn_timeout_s: float = 30.0,
        final_wait_s: float = 30.0,
        voice_dbfs: float = -45.0,
        ambience: Callable[[], bytes] | None = None,
    ) -> None:
        """`ambience`, when given, returns the next 20 ms of background sound (320 bytes),
        mixed into every frame the caller sends, speech and silence alike."""
        self.host, self.port, self.steps = host, port, steps
        self.call_id = call_id or str(uuid.uuid4())
        self.synth = synth
        self.record = record
        self.out = out
        self.end_of_turn_s = end_of_turn_s
        self.turn_timeout_s = turn_timeout_s
        self.final_wait_s = final_wait_s
        self.voice_dbfs = voice_dbfs
        self.ambience = ambience
        self.result = CallResult(self.call_id)
        self._t0 = 0.0  # monotonic time of the connection: the result's clock
        # pcm to send, whole frames, with the line a frame starts or ends the speech of
        self._outbox: asyncio.Queue[tuple[bytes, Line | None, int]] = asyncio.Queue()
        self._bot_audio: list[bytes] = []
        self._last_voice = 0.0  # monotonic time of the last voiced bot frame
        self._voice_since_mark = False
        self._closed = asyncio.Event()
        self._voiced = asyncio.Event()  # set on each voiced bot frame
        self._idle = asyncio.Event()  # set when our outbox is empty

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @property
    def closed(self) -> bool:
        """The bot ended the call (or the connection broke)."""
        return self._closed.is_set()

    def clock(self) -> float:
        """Seconds since the connection: the clock of the result's lines and bot stretches."""
        return time.monotonic() - self._t0

    async def run(self) -> CallResult:
        t0 = self._t0 = time.monotonic()
        self.result.started_wall = time.time()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout=5
        )
        writer.write(framing.encode_uuid(uuid.UUID(self.call_id).bytes))
        sender = asyncio.create_task(self._send_loop(writer))
        receiver = asyncio.create_task(self._receive_loop(reader))
        try:
            await self._script(writer)
        finally:
            sender.cancel()
            receiver.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            if not writer.is_closing():
                writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self.result.duration_s = time.monotonic() - t0
            if self.record is not None:
                self._write_wav(self.record)
        return self.result

    async def _script(self, writer: asyncio.StreamWriter) -> None:
        source = self.steps if not isinstance(self.steps, Sequence) else _Listed(self.steps)
        opens_with_bargein = isinstance(source, _Listed) and source.first_verb == "bargein"
        if not opens_with_bargein:
            await self._wait_bot_turn()  # let the welcome end, unless cutting into it is the point
        while (step := await source.next_step()) is not None:
            if self._closed.is_set():
                # A fixed script expected to say this line; a live policy merely chose it as
                # the bot was hanging up, which is no fault of the call.
                if isinstance(source, _Listed):
                    self.result.errors.append(f"line {step.line}: the bot hung up before this step")
                self.result.hung_up_by = "bot"
                return
            match step.verb:
                case "say" | "bargein":
                    if step.verb == "bargein":
                        await self._wait_bot_voice()
                    self.say(f"Caller: {step.arg}")
                    pcm = await asyncio.to_thread(self.synth, step.arg)
                    await self._queue_pcm(pcm, Line(step.verb, step.arg, step.tag))
                    self.result.turns += 1
                    if step.verb == "say":
                        await self._wait_bot_turn()
                case "wav":
                    self.say(f"Caller: {step.shown or '<' + step.arg + '>'}")
                    line = Line("wav", step.shown or step.arg, step.tag)
                    await self._queue_pcm(read_wav_8k(Path(step.arg)), line)
                    self.result.turns += 1
                    await self._wait_bot_turn()
                case "dtmf":
                    line = Line("dtmf", step.arg, step.tag)
                    self.result.lines.append(line)
                    for digit in step.arg:
                        self.say(f"Caller: DTMF {digit}")
                        writer.write(framing.encode_dtmf(digit))
                        if line.start_s is None:
                            line.start_s = self.clock()
                        line.end_s = self.clock()
                        await asyncio.sleep(0.35)  # Asterisk reports digits at the tone's end
                    await self._wait_bot_turn()
                case "wait":
                    await asyncio.sleep(float(step.arg))
                case "hangup":
                    self.result.hung_up_by = "caller"
                    self.say("Caller: (hangs up)")
                    return
        # Script done: the bot should end the call (goodbye, then kind 0x00).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout=self.final_wait_s)
        if self._closed.is_set():
            self.result.hung_up_by = "bot"
            self.say("Bot: (hangs up)")
        else:
            self.result.hung_up_by = "caller"
            self.say("Caller: (hangs up: the bot did not end the call)")

    async def _queue_pcm(self, pcm: bytes, line: Line) -> None:
        if len(pcm) % FRAME_BYTES:
            pcm += bytes(FRAME_BYTES - len(pcm) % FRAME_BYTES)
        frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
        voiced = [i for i, f in enumerate(frames) if rms_dbfs(f) > SPEECH_DBFS]
        last = voiced[-1] if voiced else len(frames) - 1
        self.result.lines.append(line)
        self._idle.clear()
        for i, frame in enumerate(frames):
            self._outbox.put_nowait((frame, line, (i == 0) | (i == last) << 1))
        # The bot may hang up mid-line: the send loop then stops and never empties the outbox.
        idle = asyncio.ensure_future(self._idle.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        await asyncio.wait({idle, closed}, return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()
        closed.cancel()

    async def _send_loop(self, writer: asyncio.StreamWriter) -> None:
        """One frame every 20 ms on absolute deadlines, like a phone's RTP clock."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while not writer.is_closing():
            line, marks = None, 0
            try:
                frame, line, marks = self._outbox.get_nowait()
            except asyncio.QueueEmpty:
                frame = SILENCE
                self._idle.set()
            if self.ambience is not None:
                frame = mix(frame, self.ambience())
            writer.write(framing.encode_audio(frame))
            if line is not None and marks:
                now = self.clock()
                if marks & 1:
                    line.start_s = now
                if marks & 2:
                    line.end_s = now + 0.02  # the frame's audio lasts 20 ms from now
            n += 1
            delay = start + n * 0.02 - loop.time()
            if delay < -0.1:  # far behind (a stalled loop): resync rather than burst
                start, n = loop.time(), 0
                delay = 0
            await asyncio.sleep(max(delay, 0))

    async def _receive_loop(self, reader: asyncio.StreamReader) -> None:
        parser = framing.Parser(server_side=False)
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                for msg in parser.feed(data):
                    if msg.kind == framing.Kind.HANGUP:
                        return
                    if msg.is_audio:
                        self._on_bot_frame(msg.payload)
        except (ConnectionError, framing.ProtocolError) as e:
            self.result.errors.append(f"receive: {e}")
        finally:
            self._closed.set()

    def _on_bot_frame(self, pcm: bytes) -> None:
        self.result.frames_in += 1
        self._bot_audio.append(pcm)
        if rms_dbfs(pcm) > self.voice_dbfs:
            self.result.bot_frames_voiced += 1
            self._last_voice = time.monotonic()
            self._voice_since_mark = True
            self._voiced.set()
            now = self._last_voice - self._t0
            runs = self.result.bot_speech
            if runs and now - runs[-1][1] <= BOT_RUN_JOIN_S:
                runs[-1][1] = now + 0.02
            else:
                runs.append([now, now + 0.02])

    async def _wait_bot_voice(self) -> None:
        """Wait for the bot's next voiced frame (a barge-in speaks over it)."""
        self._voiced.clear()
        closed = asyncio.ensure_future(self._closed.wait())
        voiced = asyncio.ensure_future(self._voiced.wait())
        await asyncio.wait(
            {closed, voiced}, timeout=self.turn_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        closed.cancel()
        voiced.cancel()

    async def _wait_bot_turn(self) -> None:
        """Wait until the bot has spoken and then been quiet for `end_of_turn_s`."""
        self._voice_since_mark = False
        deadline = time.monotonic() + self.turn_timeout_s
        while time.monotonic() < deadline and not self._closed.is_set():
            if self._voice_since_mark and time.monotonic() - self._last_voice > self.end_of_turn_s:
                return
            await asyncio.sleep(0.02)
        if not self._closed.is_set():
            self.result.errors.append(f"the bot said nothing for {self.turn_timeout_s:.0f} s")

    def _write_wav(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(b"".join(self._bot_audio))


class _Listed:
    """A fixed script as a step source."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = iter(steps)
        self.first_verb = steps[0].verb if steps else ""

    async def next_step(self) -> Step | None:
        return next(self._steps, None)


def mix(frame: bytes, background: bytes) -> bytes:
    """Two s16le frames summed, clipped to the sample range."""
    a = np.frombuffer(frame, "<i2").astype(np.int32)
    b = np.frombuffer(background, "<i2").astype(np.int32)
    n = min(len(a), len(b))
    a[:n] += b[:n]
    return bytes(np.clip(a, -32768, 32767).astype("<i2").tobytes())
