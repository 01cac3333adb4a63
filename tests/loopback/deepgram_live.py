"""A local server that speaks Deepgram's live listen protocol (`/v1/listen`, API v1).

Tests point the real `deepgram-sdk` at it. What it "hears" comes from a script keyed to the audio it
has received on each connection (seconds of s16le 8 kHz mono), so a test decides what is
transcribed and when, and the wire traffic is the one Deepgram's servers produce: JSON `Results`
(interim and final), `SpeechStarted`, `UtteranceEnd`, `Metadata` on close; `KeepAlive` and
`CloseStream` text messages; the 10 s no-audio close (1011, NET-0001); HTTP 401 on a bad key.

Keyed mode: a test caller's line k is a tone burst at `key_hz(k)` (`key_tone(k)`), and every
connection hears the same text for the same audio, whichever connection it arrives on: a worker
that takes a call over after another died and re-sends the caller's audio gets the same
transcript, where utterance mode (one shared list, popped per stretch) would skip a line.

Fault injection (per instance): drop the TCP connection abruptly after N bytes of audio, delay every
response, refuse the first N handshakes with HTTP 503, hang the first N handshakes, or never answer.
Every connection is recorded for the test to inspect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

# Keyed mode's tones live with the callers that speak them (`voicebot call --keyed`).
from voicebot.keyed import KEY_LINES, key_hz, key_of, key_tone  # noqa: F401

BYTES_PER_SECOND = 16_000  # s16le, 8 kHz, mono: what the provider is configured to send
NET0001_REASON = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)
_MODEL_UUID = "1dbdfb4d-85b2-4659-9831-16b3c76229aa"
_BOOLEAN_PARAMS = ("interim_results", "vad_events", "smart_format", "punctuate")
_ENCODINGS = {"linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "speex"}
SAMPLE_RATE = 8000


@dataclass(frozen=True, slots=True)
class Transcript:
    """A `Results` message; times in seconds of this connection's audio."""

    text: str
    start: float
    end: float
    is_final: bool = True
    speech_final: bool = False
    confidence: float = 0.97

    @property
    def audio_end(self) -> float:
        return self.end


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    timestamp: float

    @property
    def audio_end(self) -> float:
        return self.timestamp


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    last_word_end: float

    @property
    def audio_end(self) -> float:
        return self.last_word_end


Event = Transcript | SpeechStarted | UtteranceEnd


@dataclass(frozen=True, slots=True)
class Cue:
    """Send `event` once `at` seconds of audio have arrived on the connection."""

    at: float
    event: Event


@dataclass(slots=True)
class ConnectionRecord:
    index: int
    query: dict[str, str]  # every parameter but `keyterm`, which may repeat
    keyterms: list[str] = field(default_factory=list)  # `keyterm` parameters
    configures: list[list[str] | None] = field(default_factory=list)  # Configure keyterms
    audio: bytearray = field(default_factory=bytearray)
    audio_base: int = 0  # bytes dropped from the front of `audio` (keep_history=False)
    keepalives: int = 0
    close_stream: bool = False
    dropped: bool = False
    close_code: int | None = None
    close_reason: str = ""
    sent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def audio_seconds(self) -> float:
        return (self.audio_base + len(self.audio)) / BYTES_PER_SECOND


@dataclass(slots=True)
class Faults:
    drop_after_bytes: dict[int, int] = field(default_factory=dict)  # connection index -> bytes
    response_delay_s: float = 0.0
    refuse_connects: int = 0  # HTTP 503 on the first N handshakes
    hang_connects: int = 0  # never answer the first N handshakes
    mute: bool = False  # accept audio, never send anything back


class DeepgramLoopback:
    """`async with DeepgramLoopback(api_key=..., scripts=[[Cue(...), ...]]) as dg: dg.url`.

    Connection i plays `scripts[i]`, the last script repeating for later connections.
    """

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        scripts: Sequence[Sequence[Cue]] = ((),),
        no_audio_timeout_s: float = 10.0,
        empty_result_every_s: float | None = 1.0,
        faults: Faults | None = None,
        utterances: Sequence[str] | None = None,
        utterance_silence_s: float = 0.5,
        voice_dbfs: float = -40.0,
        keyed: Sequence[str] | None = None,
        keep_history: bool = True,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        # False (a load run of many calls for minutes): connections keep only the audio the
        # segmentation still needs and not what was sent, so memory stays flat.
        self.keep_history = keep_history
        self.port = port  # 0: a free one
        # Utterance mode: instead of cues at fixed audio times, each voiced stretch of the audio
        # received (energy above `voice_dbfs`, ended by `utterance_silence_s` of quiet) is
        # "heard" as the next of `utterances`, so a test caller's lines get scripted transcripts
        # whatever their length. Shared by all connections, so a reconnect continues the list.
        self.utterances = list(utterances) if utterances is not None else None
        # Keyed mode (segmented like utterance mode): a stretch whose tone is line k's is heard
        # as `keyed[k]` on any connection; an unkeyed stretch is heard as "".
        self.keyed = list(keyed) if keyed is not None else None
        if self.utterances is not None and self.keyed is not None:
            raise ValueError("choose utterance mode or keyed mode, not both")
        self.utterance_silence_s = utterance_silence_s
        self.voice_dbfs = voice_dbfs
        self.heard: list[str] = []
        self.scripts = [list(s) for s in scripts] or [[]]
        self.no_audio_timeout_s = no_audio_timeout_s
        # Deepgram answers silence with empty-transcript finals; the provider relies on a steady
        # flow of answers to tell a live server from a hung one.
        self.empty_result_every_s = empty_result_every_s
        self.faults = faults or Faults()
        self.connections: list[ConnectionRecord] = []
        self.handshakes = 0
        self.changed = asyncio.Condition()
        self._server: Server | None = None
        self._release_hung = asyncio.Event()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the loopback first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"ws://{host}:{port}"

    async def __aenter__(self) -> DeepgramLoopback:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            self.port,
            process_request=self._process_request,
            compression=None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release_hung.set()
        assert self._server is not None
        self._server.close()
        await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def wait_for(self, predicate: Any, within_s: float = 5.0) -> None:
        """Wait until `predicate(self)` holds, re-checked whenever a connection changes."""
        async with asyncio.timeout(within_s), self.changed:
            await self.changed.wait_for(lambda: predicate(self))

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self.handshakes <= self.faults.hang_connects:
            await self._release_hung.wait()
            return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        if self.handshakes <= self.faults.hang_connects + self.faults.refuse_connects:
            return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "refused by the loopback\n")
        url = urlsplit(request.path)
        if url.path != "/v1/listen":
            return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return conn.respond(HTTPStatus.UNAUTHORIZED, '{"err_code":"INVALID_AUTH"}\n')
        problem = query_problem(dict(parse_qsl(url.query)))
        if problem:
            return conn.respond(HTTPStatus.BAD_REQUEST, json.dumps({"err_msg": problem}) + "\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        params = parse_qsl(urlsplit(ws.request.path).query)
        record = ConnectionRecord(
            index=len(self.connections),
            query={k: v for k, v in params if k != "keyterm"},
            keyterms=[v for k, v in params if k == "keyterm"],
        )
        self.connections.append(record)
        session = _Session(self, ws, record)
        try:
            await session.run()
        except ConnectionClosed:
            pass
        finally:
            if ws.close_code is not None and record.close_code is None:
                record.close_code = ws.close_code
                record.close_reason = ws.close_reason or ""
            await self._notify()


def query_problem(query: dict[str, str]) -> str | None:
    """What Deepgram would reject in these query parameters, or None."""
    if "model" not in query:
        return "model is required"
    encoding = query.get("encoding")
    if encoding is not None:
        if encoding not in _ENCODINGS:
            return f"unknown encoding {encoding!r}"
        if not query.get("sample_rate", "").isdigit():
            return "sample_rate is required with encoding"
    if not query.get("channels", "1").isdigit():
        return "channels must be an integer"
    for name in _BOOLEAN_PARAMS:
        if query.get(name, "false") not in ("true", "false"):
            return f"{name} must be true or false"
    endpointing = query.get("endpointing", "10")
    if endpointing != "false" and not endpointing.isdigit():
        return "endpointing must be an integer or false"
    if "utterance_end_ms" in query:
        if not query["utterance_end_ms"].isdigit() or int(query["utterance_end_ms"]) < 1000:
            return "utterance_end_ms must be an integer >= 1000"
        if query.get("interim_results") != "true":
            return "utterance_end_ms requires interim_results=true"
    return None


class _Session:
    """One accepted connection: receive audio and control messages, play the script."""

    def __init__(self, server: DeepgramLoopback, ws: ServerConnection, record: ConnectionRecord):
        self.server = server
        self.ws = ws
        self.record = record
        script = server.scripts[min(record.index, len(server.scripts) - 1)]
        self.pending = sorted(script, key=lambda c: c.at)
        self.request_id = str(uuid.uuid4())
        self.finalized_upto = 0.0
        self.voiced_from: float | None = None  # utterance mode: start of the current speech
        self.last_voice = 0.0
        self.segmented_upto = 0  # bytes of audio already classified

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.server.no_audio_timeout_s):
                    message = await self.ws.recv()
            except TimeoutError:
                await self.ws.close(1011, NET0001_REASON)
                self.record.close_code, self.record.close_reason = 1011, NET0001_REASON
                return
            if isinstance(message, bytes):
                if await self._on_audio(message):
                    return
            elif await self._on_text(message):
                return
            await self.server._notify()

    async def _on_audio(self, chunk: bytes) -> bool:
        self.record.audio += chunk
        limit = self.server.faults.drop_after_bytes.get(self.record.index)
        if limit is not None and len(self.record.audio) >= limit:
            self.record.dropped = True
            self.ws.transport.abort()  # no close frame: what a network cut looks like
            return True
        if self.server.utterances is not None or self.server.keyed is not None:
            await self._segment()
            if not self.server.keep_history:
                self._forget_audio()
            return False
        await self._play(self.record.audio_seconds)
        return False

    def _forget_audio(self) -> None:
        """Drop the audio before the stretch being heard (or before what is not segmented)."""
        keep_from = self.segmented_upto
        if self.voiced_from is not None:
            keep_from = int(self.voiced_from * SAMPLE_RATE) * 2
        cut = keep_from - self.record.audio_base
        if cut > 0:
            del self.record.audio[:cut]
            self.record.audio_base += cut

    async def _segment(self) -> None:
        """Utterance mode: classify new 20 ms frames as voiced or not, answer per utterance."""
        frame = BYTES_PER_SECOND // 50
        audio = self.record.audio
        while self.segmented_upto + frame <= self.record.audio_base + len(audio):
            at = self.segmented_upto - self.record.audio_base
            chunk = bytes(audio[at : at + frame])
            self.segmented_upto += frame
            t = self.segmented_upto / BYTES_PER_SECOND
            samples = np.frombuffer(chunk, "<i2").astype(np.float32)
            # numpy, not a Python sum: at 200 calls this runs 10,000 times a second
            rms = math.sqrt(float(samples @ samples) / len(samples)) if len(samples) else 0.0
            voiced = 20 * math.log10(max(rms, 1e-3) / 32768) > self.server.voice_dbfs
            if voiced:
                if self.voiced_from is None:
                    self.voiced_from = t - 0.02
                    await self._send_event(SpeechStarted(round(self.voiced_from, 2)))
                self.last_voice = t
            elif self.voiced_from is None:
                step = self.server.empty_result_every_s
                if step is not None and t - self.finalized_upto >= step:  # silence, as Deepgram
                    await self._send_event(Transcript("", self.finalized_upto, t, confidence=0.0))
            elif t - self.last_voice >= self.server.utterance_silence_s:
                start, end = self.voiced_from, self.last_voice
                self.voiced_from = None
                text = self._heard_as(start, end)
                self.server.heard.append(text)
                await self._send_event(
                    Transcript(
                        text, round(start, 2), round(end, 2), is_final=True, speech_final=True
                    )
                )
                await self._send_event(UtteranceEnd(round(end, 2)))

    def _heard_as(self, start: float, end: float) -> str:
        """The text of the voiced stretch [start, end] (seconds of this connection's audio)."""
        keyed = self.server.keyed
        if keyed is not None:
            base = self.record.audio_base
            stretch = self.record.audio[
                max(0, int(start * SAMPLE_RATE) * 2 - base) : int(end * SAMPLE_RATE) * 2 - base
            ]
            k = key_of(bytes(stretch))
            return keyed[k] if k is not None and k < len(keyed) else ""
        script = self.server.utterances
        assert script is not None
        return script.pop(0) if script else ""

    async def _on_text(self, text: str) -> bool:
        try:
            body = json.loads(text)
            kind = body.get("type")
        except (ValueError, AttributeError):
            kind = None
        match kind:
            case "Configure":
                # Nova-3 replaces its keyterms mid-stream; other models refuse.
                keyterms = body.get("keyterms")
                self.record.configures.append(keyterms)
                await self.server._notify()
                if not self.record.query.get("model", "").startswith("nova-3"):
                    await self._send(
                        {
                            "type": "ConfigureFailure",
                            "request_id": "loopback",
                            "code": "CONFIGURE_KEYTERMS_NOT_SUPPORTED",
                            "description": "keyterms need nova-3",
                        }
                    )
                    return False
                await self._send(
                    {"type": "ConfigureSuccess", "request_id": "loopback", "keyterms": keyterms}
                )
                return False
            case "KeepAlive":
                self.record.keepalives += 1
                return False
            case "Finalize":
                await self._flush()
                return False
            case "CloseStream":
                self.record.close_stream = True
                await self._flush()
                await self._send(self._metadata())
                await self.ws.close(1000)
                self.record.close_code = 1000
                return True
            case _:
                await self.ws.close(1008, "DATA-0000: invalid control message")
                self.record.close_code = 1008
                return True

    async def _play(self, heard_upto: float) -> None:
        while self.pending and self.pending[0].at <= heard_upto:
            await self._send_event(self.pending.pop(0).event)
        await self._fill_silence(heard_upto)

    async def _flush(self) -> None:
        """Send all the received audio holds, whatever the cues' `at` (as CloseStream does)."""
        heard = self.record.audio_seconds + 1e-6
        for cue in [c for c in self.pending if c.event.audio_end <= heard]:
            self.pending.remove(cue)
            await self._send_event(cue.event)
        await self._fill_silence(self.record.audio_seconds)

    async def _fill_silence(self, heard_upto: float) -> None:
        step = self.server.empty_result_every_s
        if step is None:
            return
        while heard_upto - self.finalized_upto >= step:
            window_end = self.finalized_upto + step
            speech_pending = any(
                isinstance(c.event, Transcript) and c.event.start < window_end for c in self.pending
            )
            if speech_pending:
                return
            await self._send_event(Transcript("", self.finalized_upto, window_end, confidence=0.0))

    async def _send_event(self, event: Event) -> None:
        match event:
            case Transcript():
                if event.is_final:
                    self.finalized_upto = max(self.finalized_upto, event.end)
                await self._send(self._results(event))
            case SpeechStarted(timestamp=timestamp):
                await self._send({"type": "SpeechStarted", "channel": [0], "timestamp": timestamp})
            case UtteranceEnd(last_word_end=last):
                await self._send({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last})

    async def _send(self, payload: dict[str, Any]) -> None:
        if self.server.faults.mute:
            return
        if self.server.faults.response_delay_s:
            await asyncio.sleep(self.server.faults.response_delay_s)
        if self.server.keep_history:
            self.record.sent.append(payload)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(payload))

    def _results(self, t: Transcript) -> dict[str, Any]:
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(t.end - t.start, 3),
            "start": round(t.start, 3),
            "is_final": t.is_final,
            "speech_final": t.speech_final,
            "from_finalize": False,
            "channel": {
                "alternatives": [
                    {"transcript": t.text, "confidence": t.confidence, "words": _words(t)}
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {
                    "name": "general-nova-3",
                    "version": "2025-01-01.0",
                    "arch": "nova-3",
                },
                "model_uuid": _MODEL_UUID,
            },
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": hashlib.sha256(self.record.audio).hexdigest(),
            "created": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "duration": self.record.audio_seconds,
            "channels": 1,
            "models": [_MODEL_UUID],
            "model_info": {
                _MODEL_UUID: {"name": "general-nova-3", "version": "2025-01-01.0", "arch": "nova-3"}
            },
        }


def _words(t: Transcript) -> list[dict[str, Any]]:
    """Spread the transcript's words evenly over its time span, as timed words."""
    tokens = t.text.split()
    if not tokens:
        return []
    span = (t.end - t.start) / len(tokens)
    return [
        {
            "word": token.strip(".,?!").lower(),
            "start": round(t.start + i * span, 3),
            "end": round(t.start + (i + 1) * span, 3),
            "confidence": t.confidence,
            "punctuated_word": token,
        }
        for i, token in enumerate(tokens)
    ]
