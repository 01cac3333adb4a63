"""`voicebot call`: a test caller that behaves like Asterisk's AudioSocket() application.

It sends the UUID first, then one 320-byte slin frame every 20 ms (silence between its lines,
as a connected phone does), speaks scripted lines synthesized offline (or WAV files), sends
DTMF, waits for the bot to finish speaking before its next line (or barges in when told),
records the bot's audio to a WAV file and hangs up by closing TCP. With NATS reachable it also
prints what the bot said and understood, live.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

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


@dataclass
class CallResult:
    call_id: str
    frames_in: int = 0
    bot_frames_voiced: int = 0
    hung_up_by: str = ""  # bot | caller
    duration_s: float = 0.0
    turns: int = 0
    errors: list[str] = field(default_factory=list)


class Caller:
    def __init__(
        self,
        host: str,
        port: int,
        steps: list[Step],
        *,
        call_id: str | None = None,
        synth: Callable[[str], bytes],
        record: Path | None = None,
        out: TextIO = sys.stdout,
        end_of_turn_s: float = 0.8,
        turn_timeout_s: float = 30.0,
        final_wait_s: float = 30.0,
        voice_dbfs: float = -45.0,
    ) -> None:
        self.host, self.port, self.steps = host, port, steps
        self.call_id = call_id or str(uuid.uuid4())
        self.synth = synth
        self.record = record
        self.out = out
        self.end_of_turn_s = end_of_turn_s
        self.turn_timeout_s = turn_timeout_s
        self.final_wait_s = final_wait_s
        self.voice_dbfs = voice_dbfs
        self.result = CallResult(self.call_id)
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()  # pcm to send, whole frames
        self._bot_audio: list[bytes] = []
        self._last_voice = 0.0  # monotonic time of the last voiced bot frame
        self._voice_since_mark = False
        self._closed = asyncio.Event()
        self._voiced = asyncio.Event()  # set on each voiced bot frame
        self._idle = asyncio.Event()  # set when our outbox is empty

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def run(self) -> CallResult:
        t0 = time.monotonic()
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
        if not (self.steps and self.steps[0].verb == "bargein"):
            await self._wait_bot_turn()  # let the welcome end, unless cutting into it is the point
        for step in self.steps:
            if self._closed.is_set():
                self.result.errors.append(f"line {step.line}: the bot hung up before this step")
                return
            match step.verb:
                case "say" | "bargein":
                    if step.verb == "bargein":
                        await self._wait_bot_voice()
                    self.say(f"Caller: {step.arg}")
                    await self._queue_pcm(await asyncio.to_thread(self.synth, step.arg))
                    self.result.turns += 1
                    if step.verb == "say":
                        await self._wait_bot_turn()
                case "wav":
                    self.say(f"Caller: {step.shown or '<' + step.arg + '>'}")
                    await self._queue_pcm(read_wav_8k(Path(step.arg)))
                    self.result.turns += 1
                    await self._wait_bot_turn()
                case "dtmf":
                    for digit in step.arg:
                        self.say(f"Caller: DTMF {digit}")
                        writer.write(framing.encode_dtmf(digit))
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

    async def _queue_pcm(self, pcm: bytes) -> None:
        if len(pcm) % FRAME_BYTES:
            pcm += bytes(FRAME_BYTES - len(pcm) % FRAME_BYTES)
        self._idle.clear()
        for i in range(0, len(pcm), FRAME_BYTES):
            self._outbox.put_nowait(pcm[i : i + FRAME_BYTES])
        await self._idle.wait()

    async def _send_loop(self, writer: asyncio.StreamWriter) -> None:
        """One frame every 20 ms on absolute deadlines, like a phone's RTP clock."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while not writer.is_closing():
            try:
                frame = self._outbox.get_nowait()
            except asyncio.QueueEmpty:
                frame = SILENCE
                self._idle.set()
            writer.write(framing.encode_audio(frame))
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
