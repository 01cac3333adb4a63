"""A caller that measures what a person on the line lives through while things break.

It behaves like Asterisk's AudioSocket() application (UUID first, one 320-byte slin frame every
20 ms on absolute deadlines, silence between its lines, TCP close on hang-up) and speaks keyed
lines: line k is a tone burst the Deepgram loopback hears as the script's k-th text, whichever
STT instance receives it. Every frame the bot sends is kept with its arrival time and level, so
the waits are measured from the caller's side: from the end of each caller line (and from the
call's start) to the next voiced bot frame.

A person hearing "un instant, s'il vous plaît" waits for the real answer before speaking: the
caller knows the bot's turn is over from the call's events (every `say` played out, and the
line quiet), not from a pause in the audio that may only be the edge's hold phrase.

Faults are injected at named moments through hooks:
  `caller_speech:k`  halfway through caller line k (the line goes on while the hook runs)
  `bot_speech:k`     `bot_speech_after_s` into the bot's voiced answer to line k (0: welcome)
  `between:k`        after the bot's answer to line k, before line k+1 (the caller waits for it)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from loopback.deepgram_live import key_tone

from edge import framing
from events import schemas
from events.audio import FRAME_BYTES, SILENCE
from events.bus import Bus
from events.tail import StreamTail
from voicebot.caller import rms_dbfs

Hook = Callable[[], Awaitable[object]]

VOICE_DBFS = -45.0  # a frame louder than this is the bot speaking


@dataclass(frozen=True, slots=True)
class Heard:
    t: float  # monotonic arrival time
    dbfs: float
    pcm: bytes

    @property
    def voiced(self) -> bool:
        return self.dbfs > VOICE_DBFS


@dataclass(frozen=True, slots=True)
class Wait:
    after: str  # "start" or "line k"
    seconds: float | None  # None: the bot never spoke again


@dataclass
class CallerResult:
    call_id: str
    t0: float = 0.0  # monotonic: connected
    wall0: float = 0.0
    frames: list[Heard] = field(default_factory=list)
    line_ends: list[float] = field(default_factory=list)  # monotonic, per line spoken
    hung_up_by: str = ""  # bot | caller
    errors: list[str] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # hook name -> monotonic time

    def wall(self, t: float) -> float:
        return self.wall0 + (t - self.t0)

    def waits(self) -> list[Wait]:
        """For the call's start and each line end: time to the next voiced bot frame."""
        voiced = [f.t for f in self.frames if f.voiced]
        out = []
        for name, since in [("start", self.t0)] + [
            (f"line {k}", t) for k, t in enumerate(self.line_ends)
        ]:
            nxt = next((t for t in voiced if t > since), None)
            out.append(Wait(name, None if nxt is None else nxt - since))
        return out

    @property
    def longest_wait(self) -> float:
        waits = [w.seconds for w in self.waits()]
        return float("inf") if any(w is None for w in waits) else max(w or 0.0 for w in waits)

    def answers(self, pipeline_starts: list[float]) -> list[float | None]:
        """For the call's start and each line end: time to the pipeline's answer (the first
        TTS playback that started after it, wall clock), hold phrases of the edge not counted."""
        out: list[float | None] = []
        for since in [self.t0, *self.line_ends]:
            wall = self.wall(since)
            nxt = min((t for t in pipeline_starts if t > wall), default=None)
            out.append(None if nxt is None else nxt - wall)
        return out

    def heard_again(self, since_mono: float) -> float | None:
        """Seconds from `since_mono` to the next voiced frame."""
        nxt = next((f.t for f in self.frames if f.voiced and f.t > since_mono), None)
        return None if nxt is None else nxt - since_mono


class _BotTurns:
    """The call's says and playbacks, read from CALLS: is the bot done answering?"""

    def __init__(self, bus: Bus, call_id: str) -> None:
        self.tail = StreamTail(
            bus,
            "CALLS",
            [f"call.{call_id}.say", f"call.{call_id}.playback"],
            name=f"caller-{call_id[:8]}",
        )
        self.bus = bus
        self.says: set[str] = set()
        self.over: set[str] = set()
        self.last_start_ts = 0.0  # wall clock of the last pipeline playback start
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.tail.start()
        self._task = asyncio.create_task(self._read(), name="caller-turns")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.tail.close()

    async def _read(self) -> None:
        async for msg in self.tail:
            env = self.bus.decode(msg)
            if env is None:
                continue
            match env.event:
                case schemas.Say(utterance_id=u):
                    self.says.add(u)
                case schemas.PlaybackStarted(origin="tts", ts=ts):
                    self.last_start_ts = max(self.last_start_ts, ts)
                case (
                    schemas.PlaybackFinished(origin="tts", utterance_id=u)
                    | schemas.PlaybackInterrupted(origin="tts", utterance_id=u)
                ):
                    self.over.add(u)
            self.changed.set()

    def answered_since(self, wall: float) -> bool:
        """The pipeline started playing after `wall` and every say so far has played out."""
        return self.last_start_ts > wall and self.says <= self.over


class KeyedCaller:
    def __init__(
        self,
        bus: Bus,
        host: str,
        port: int,
        lines: Sequence[int],
        *,
        call_id: str | None = None,
        hooks: dict[str, Hook] | None = None,
        tone_s: float = 0.6,
        quiet_s: float = 0.5,
        bot_speech_after_s: float = 0.3,
        turn_timeout_s: float = 25.0,
        final_wait_s: float = 25.0,
    ) -> None:
        self.bus = bus
        self.host, self.port = host, port
        self.lines = list(lines)
        self.call_id = call_id or str(uuid.uuid4())
        self.hooks = dict(hooks or {})
        self.tone_s = tone_s
        self.quiet_s = quiet_s
        self.bot_speech_after_s = bot_speech_after_s
        self.turn_timeout_s = turn_timeout_s
        self.final_wait_s = final_wait_s
        self.result = CallerResult(self.call_id)
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._sent = 0  # line frames written
        self._progress = asyncio.Event()
        self._closed = asyncio.Event()
        self._hook_tasks: list[asyncio.Task[object]] = []

    async def run(self) -> CallerResult:
        turns = _BotTurns(self.bus, self.call_id)
        await turns.start()  # before connecting: the call's first say must not be missed
        r = self.result
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout=5
            )
            r.t0, r.wall0 = time.monotonic(), time.time()
            writer.write(framing.encode_uuid(uuid.UUID(self.call_id).bytes))
            sender = asyncio.create_task(self._send_loop(writer), name="caller-send")
            receiver = asyncio.create_task(self._receive_loop(reader), name="caller-receive")
            try:
                await self._script(turns)
            finally:
                sender.cancel()
                receiver.cancel()
                await asyncio.gather(sender, receiver, return_exceptions=True)
                if not writer.is_closing():
                    writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                if self._hook_tasks:
                    await asyncio.gather(*self._hook_tasks, return_exceptions=True)
        finally:
            await turns.close()
        return r

    # --- the script -----------------------------------------------------------------------------

    async def _script(self, turns: _BotTurns) -> None:
        r = self.result
        await self._bot_answers(turns, 0, r.wall0, r.t0)
        for n, key in enumerate(self.lines, 1):
            if self._closed.is_set():
                r.errors.append(f"the bot hung up before line {n}")
                return
            await self._hook(f"between:{n - 1}", inline=True)
            end = await self._speak(key, n)
            await self._bot_answers(turns, n, r.wall(end), end)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout=self.final_wait_s)
        if self._closed.is_set():
            r.hung_up_by = "bot"
        else:
            r.hung_up_by = "caller"
            r.errors.append(f"the bot did not end the call within {self.final_wait_s:.0f} s")

    async def _speak(self, key: int, n: int) -> float:
        pcm = key_tone(key, self.tone_s)
        pcm += bytes(-len(pcm) % FRAME_BYTES)
        frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
        start = self._sent
        for frame in frames:
            self._outbox.put_nowait(frame)
        await self._sent_upto(start + len(frames) // 2)
        await self._hook(f"caller_speech:{n}")
        await self._sent_upto(start + len(frames))
        end = time.monotonic()
        self.result.line_ends.append(end)
        return end

    async def _sent_upto(self, count: int) -> None:
        while self._sent < count:
            self._progress.clear()
            await self._progress.wait()

    async def _bot_answers(self, turns: _BotTurns, n: int, since_wall: float, since: float) -> None:
        """Wait until the bot has answered line n (0: the welcome) and the line is quiet."""
        deadline = time.monotonic() + self.turn_timeout_s
        hooked = f"bot_speech:{n}" not in self.hooks
        while not self._closed.is_set():
            now = time.monotonic()
            if now > deadline:
                self.result.errors.append(f"no answer to line {n} in {self.turn_timeout_s:.0f} s")
                return
            voiced = [f.t for f in self.result.frames if f.voiced and f.t > since]
            if not hooked and voiced and now - voiced[0] >= self.bot_speech_after_s:
                hooked = True
                await self._hook(f"bot_speech:{n}")
            quiet = not voiced or now - voiced[-1] >= self.quiet_s
            if hooked and quiet and turns.answered_since(since_wall):
                return
            turns.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turns.changed.wait(), timeout=0.05)

    async def _hook(self, name: str, *, inline: bool = False) -> None:
        hook = self.hooks.get(name)
        if hook is None:
            return
        self.result.marks[name] = time.monotonic()
        if inline:
            await hook()
        else:  # the call goes on (audio keeps flowing) while the fault acts
            self._hook_tasks.append(asyncio.create_task(hook(), name=f"hook-{name}"))  # type: ignore[arg-type]

    # --- the line ---------------------------------------------------------------------------------

    async def _send_loop(self, writer: asyncio.StreamWriter) -> None:
        """One frame every 20 ms on absolute deadlines, like a phone's RTP clock."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while not writer.is_closing():
            try:
                frame = self._outbox.get_nowait()
                self._sent += 1
                self._progress.set()
            except asyncio.QueueEmpty:
                frame = SILENCE
            writer.write(framing.encode_audio(frame))
            n += 1
            delay = start + n * 0.02 - loop.time()
            if delay < -0.1:  # far behind (a stalled loop): resync rather than burst
                start, n = loop.time(), 0
                delay = 0
            await asyncio.sleep(max(delay, 0))

    async def _receive_loop(self, reader: asyncio.StreamReader) -> None:
        parser = framing.Parser(server_side=False)
        frames = self.result.frames
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                now = time.monotonic()
                for msg in parser.feed(data):
                    if msg.kind == framing.Kind.HANGUP:
                        return
                    if msg.is_audio:
                        frames.append(Heard(now, rms_dbfs(msg.payload), msg.payload))
        except (ConnectionError, framing.ProtocolError) as e:
            self.result.errors.append(f"receive: {e}")
        finally:
            self._closed.set()
