"""Deepgram live transcription (listen v1 WebSocket) through the official `deepgram-sdk`.

One WebSocket per call. Audio not yet covered by a final result is kept, so that after a dropped
connection the next one re-sends it (plus what arrived meanwhile) and result times are shifted back
into call time. SDK and WebSocket errors are converted here into ProviderError / ProviderTimeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.socket_client import AsyncV1SocketClient
from deepgram.listen.v1.types import (
    ListenV1Configure,
    ListenV1Error,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from websockets.exceptions import WebSocketException

from stt_worker import answers
from stt_worker.providers.base import (
    Heard,
    HeardWord,
    ProviderError,
    ProviderTimeout,
    SttContext,
)

log = logging.getLogger("stt_worker.deepgram")

BYTES_PER_SECOND = 16_000  # s16le, 8 kHz, mono: the only format the edge produces
_MAX_SEND = BYTES_PER_SECOND  # re-sent backlogs go out in 1 s messages, not one huge frame


class DeepgramSettings(Protocol):
    """What this provider reads from the worker's SttConfig."""

    @property
    def deepgram_api_key(self) -> str | None: ...
    @property
    def deepgram_model(self) -> str: ...
    @property
    def deepgram_language(self) -> str: ...
    @property
    def deepgram_url(self) -> str | None: ...
    @property
    def deepgram_endpointing_ms(self) -> int: ...
    @property
    def deepgram_utterance_end_ms(self) -> int: ...
    @property
    def api_timeout_s(self) -> float: ...


class DeepgramAuthError(ProviderError):
    """The key was refused: retrying cannot help."""

    retryable = False


class _Failure(Exception):
    """One connection failed; the call goes on with a new connection if the budget allows."""

    def __init__(self, reason: str, *, timeout: bool = False) -> None:
        super().__init__(reason)
        self.timeout = timeout

    def to_provider_error(self) -> ProviderError:
        kind = ProviderTimeout if self.timeout else ProviderError
        return kind(f"deepgram: {self}")


class _CallAudio:
    """The call's audio from the first byte no final result covers yet, up to the newest byte."""

    def __init__(self) -> None:
        self.finalized = 0  # call bytes covered by final results
        self.received = 0  # call bytes handed to the provider
        self.buffer = bytearray()  # call bytes [finalized, received)
        self.ended = False
        self.arrived = asyncio.Event()
        self.unsent_since: float | None = None  # arrival time of the oldest chunk not yet sent
        self.keyterms: list[str] = []  # what the open connection should boost
        self.keyterms_changed = False

    def append(self, chunk: bytes) -> None:
        self.buffer += chunk
        self.received += len(chunk)
        if self.unsent_since is None:
            self.unsent_since = time.monotonic()
        self.arrived.set()

    def end(self) -> None:
        self.ended = True
        self.arrived.set()

    def pending_from(self, position: int) -> bytes:
        start = position - self.finalized
        return bytes(self.buffer[start : start + _MAX_SEND])

    def finalize_upto(self, position: int) -> None:
        position = min(position, self.received)
        if position > self.finalized:
            del self.buffer[: position - self.finalized]
            self.finalized = position


@dataclass(slots=True)
class _Connection:
    """Progress of one WebSocket: where its audio starts in the call and what it has sent."""

    origin: int  # call byte at which this connection's audio time is 0
    sent_upto: int
    awaiting_since: float | None = None  # audio sent and nothing heard back since then
    close_sent_at: float | None = None

    @property
    def origin_s(self) -> float:
        return self.origin / BYTES_PER_SECOND


class DeepgramStt:
    """Streams each call to Deepgram; see `stream`."""

    name = "deepgram"

    def __init__(
        self,
        config: DeepgramSettings,
        *,
        keepalive_interval_s: float = 4.0,
        max_attempts: int = 3,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 4.0,
        on_send_latency: Callable[[float], None] | None = None,
    ) -> None:
        if not config.deepgram_api_key:
            raise ValueError("DEEPGRAM_API_KEY is required for the Deepgram provider")
        self._config = config
        # Deepgram closes a stream after 10 s without audio or a text message; 3-5 s is its advice.
        self._keepalive_interval_s = keepalive_interval_s
        self._max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._on_send_latency = on_send_latency
        self._client: AsyncDeepgramClient | None = None

    async def stream(
        self,
        audio: AsyncIterator[bytes],
        *,
        call_id: str = "-",
        context: SttContext | None = None,
    ) -> AsyncIterator[Heard]:
        """Transcribe one call. Raises ProviderTimeout / ProviderError once reconnects are spent.

        On nova-3, the words the bot now expects (`answers.keyterms`) are boosted: `keyterm`
        parameters at connection time, then a `Configure` message whenever the expectation
        changes."""
        results: asyncio.Queue[Heard | None] = asyncio.Queue()
        call = _CallAudio()
        if self._keyterms_supported():
            call.keyterms = answers.keyterms(context.expecting if context else None)
            if context is not None:
                context.on_change.append(lambda c: _set_keyterms(call, c.expecting))
        runner = asyncio.create_task(self._run(audio, call, results, call_id))
        runner.add_done_callback(lambda _: results.put_nowait(None))
        try:
            while (heard := await results.get()) is not None:
                yield heard
            await runner
        finally:
            if not runner.done():
                runner.cancel()
                await asyncio.wait([runner])

    def _sdk(self) -> AsyncDeepgramClient:
        if self._client is None:
            kwargs: dict[str, Any] = {"api_key": self._config.deepgram_api_key}
            if self._config.deepgram_url:
                ws_url = self._config.deepgram_url.rstrip("/")
                http_url = ws_url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
                kwargs["environment"] = DeepgramClientEnvironment(
                    base=http_url, production=ws_url, agent=ws_url, agent_rest=http_url
                )
            self._client = AsyncDeepgramClient(**kwargs)
        return self._client

    def _keyterms_supported(self) -> bool:
        return self._config.deepgram_model.startswith("nova-3")

    async def _run(
        self,
        audio: AsyncIterator[bytes],
        call: _CallAudio,
        results: asyncio.Queue[Heard | None],
        call_id: str,
    ) -> None:
        reader = asyncio.create_task(_read_audio(audio, call))
        failures = 0
        try:
            while True:
                finalized_before = call.finalized
                try:
                    await self._connection(call, results, call_id)
                    break
                except _Failure as failure:
                    # A connection that got audio finalized proves the service works: only
                    # failures in a row count against the budget.
                    failures = 1 if call.finalized > finalized_before else failures + 1
                    if failures >= self._max_attempts:
                        log.error(
                            "[%s] deepgram gave up after %d attempts: %s",
                            call_id,
                            failures,
                            failure,
                        )
                        raise failure.to_provider_error() from failure
                    delay = min(self._backoff_max_s, self._backoff_initial_s * 2 ** (failures - 1))
                    log.warning(
                        "[%s] deepgram connection failed (%s); reconnecting in %.2f s, "
                        "re-sending %.2f s of audio",
                        call_id,
                        failure,
                        delay,
                        (call.received - call.finalized) / BYTES_PER_SECOND,
                    )
                    await asyncio.sleep(delay)
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise ProviderError("audio source failed") from reader.exception()
        finally:
            reader.cancel()
            await asyncio.wait([reader])

    async def _connection(
        self, call: _CallAudio, results: asyncio.Queue[Heard | None], call_id: str
    ) -> None:
        """Run one WebSocket until the server closes after CloseStream; raise _Failure otherwise."""
        conn = _Connection(origin=call.finalized, sent_upto=call.finalized)
        try:
            async with contextlib.AsyncExitStack() as stack:
                call.keyterms_changed = False  # the connection opens with the current ones
                socket = await self._open(stack, call.keyterms)
                log.info("[%s] deepgram connected at %.2f s of call audio", call_id, conn.origin_s)
                tasks = [
                    asyncio.create_task(self._receive(socket, call, conn, results)),
                    asyncio.create_task(self._send(socket, call, conn)),
                    asyncio.create_task(self._watch(conn)),
                ]
                try:
                    await _until_first_done_or_failed(tasks)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.wait(tasks)
        except ApiError as e:
            if e.status_code in (401, 403):
                raise DeepgramAuthError(f"deepgram refused the key (HTTP {e.status_code})") from e
            raise _Failure(f"HTTP {e.status_code} at connect") from e
        except (WebSocketException, OSError) as e:
            raise _Failure(f"{type(e).__name__}: {e}") from e
        log.info("[%s] deepgram stream closed at %.2f s", call_id, call.received / BYTES_PER_SECOND)

    async def _open(
        self, stack: contextlib.AsyncExitStack, keyterms: list[str]
    ) -> AsyncV1SocketClient:
        cfg = self._config
        extra: dict[str, Any] = {"keyterm": keyterms} if keyterms else {}
        try:
            async with asyncio.timeout(cfg.api_timeout_s):
                socket: AsyncV1SocketClient = await stack.enter_async_context(
                    self._sdk().listen.v1.connect(
                        model=cfg.deepgram_model,
                        language=cfg.deepgram_language,
                        encoding="linear16",
                        sample_rate="8000",
                        channels="1",
                        interim_results="true",
                        endpointing=str(cfg.deepgram_endpointing_ms),
                        utterance_end_ms=str(cfg.deepgram_utterance_end_ms),
                        vad_events="true",
                        smart_format="true",
                        punctuate="true",
                        **extra,
                    )
                )
        except TimeoutError as e:
            raise _Failure(f"no handshake within {cfg.api_timeout_s} s", timeout=True) from e
        # The SDK leaves websockets' 10 s close handshake timeout; a hung server must not hold
        # the call that long. `_websocket` is the SDK's only handle on the protocol object.
        protocol = getattr(socket, "_websocket", None)
        if protocol is not None and hasattr(protocol, "close_timeout"):
            protocol.close_timeout = min(cfg.api_timeout_s, 2.0)
        return socket

    async def _send(self, socket: AsyncV1SocketClient, call: _CallAudio, conn: _Connection) -> None:
        """Send audio as it comes, KeepAlive in silences, CloseStream when the call's audio ends."""
        last_sent = time.monotonic()
        while True:
            call.arrived.clear()
            if call.keyterms_changed:
                call.keyterms_changed = False
                await socket.send_configure(ListenV1Configure(keyterms=call.keyterms))
                continue
            if conn.sent_upto < call.received:
                chunk = call.pending_from(conn.sent_upto)
                await socket.send_media(chunk)
                conn.sent_upto += len(chunk)
                last_sent = time.monotonic()
                if conn.awaiting_since is None:
                    conn.awaiting_since = last_sent
                if conn.sent_upto == call.received and call.unsent_since is not None:
                    if self._on_send_latency is not None:
                        self._on_send_latency(last_sent - call.unsent_since)
                    call.unsent_since = None
                continue
            if call.ended:
                await socket.send_close_stream()
                conn.close_sent_at = time.monotonic()
                return
            idle_left = self._keepalive_interval_s - (time.monotonic() - last_sent)
            if idle_left <= 0:
                await socket.send_keep_alive()
                last_sent = time.monotonic()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle_left):
                    await call.arrived.wait()

    async def _receive(
        self,
        socket: AsyncV1SocketClient,
        call: _CallAudio,
        conn: _Connection,
        results: asyncio.Queue[Heard | None],
    ) -> None:
        async for message in socket:
            conn.awaiting_since = None
            if isinstance(message, ListenV1Error):
                raise _Failure(f"deepgram error message: {message}")
            heard = _to_heard(message, conn.origin_s)
            if isinstance(message, ListenV1Results) and message.is_final:
                end_s = message.start + message.duration
                call.finalize_upto(min(conn.sent_upto, conn.origin + round(end_s * 8000) * 2))
            if heard is not None:
                results.put_nowait(heard)
        if conn.close_sent_at is None:
            raise _Failure("server closed the stream before CloseStream")

    async def _watch(self, conn: _Connection) -> None:
        """Fail the connection when the server goes quiet while it owes us an answer."""
        limit = self._config.api_timeout_s
        while True:
            now = time.monotonic()
            for since, what in ((conn.awaiting_since, "results"), (conn.close_sent_at, "close")):
                if since is not None and now - since > limit:
                    raise _Failure(f"no {what} from deepgram within {limit} s", timeout=True)
            await asyncio.sleep(min(limit / 4, 0.5))


def _set_keyterms(call: _CallAudio, expecting: str | None) -> None:
    keyterms = answers.keyterms(expecting)
    if keyterms != call.keyterms:
        call.keyterms = keyterms
        call.keyterms_changed = True
        call.arrived.set()  # wake the sender


async def _read_audio(audio: AsyncIterator[bytes], call: _CallAudio) -> None:
    try:
        async for chunk in audio:
            if chunk:
                call.append(chunk)
    finally:
        call.end()


async def _until_first_done_or_failed(tasks: list[asyncio.Task[None]]) -> None:
    """Return when the receiver (tasks[0]) ends; raise the first failure of any task."""
    receiver, waiting = tasks[0], set(tasks)
    while waiting:
        done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
        if receiver in done:
            return


def _to_heard(message: object, origin_s: float) -> Heard | None:
    match message:
        case ListenV1Results():
            best = message.channel.alternatives[0] if message.channel.alternatives else None
            if best is None or not best.transcript:
                return None  # Deepgram answers silence with empty transcripts
            return Heard(
                kind="final" if message.is_final else "interim",
                text=best.transcript,
                confidence=best.confidence,
                start=origin_s + message.start,
                end=origin_s + message.start + message.duration,
                speech_final=bool(message.speech_final),
                words=tuple(
                    HeardWord(
                        word=w.word,
                        start=origin_s + w.start,
                        end=origin_s + w.end,
                        confidence=w.confidence,
                    )
                    for w in best.words
                ),
            )
        case ListenV1UtteranceEnd():
            end = origin_s + message.last_word_end
            return Heard(kind="utterance_end", start=end, end=end)
        case ListenV1SpeechStarted():
            at = origin_s + message.timestamp
            return Heard(kind="speech_started", start=at, end=at)
        case _:
            return None  # Metadata and message types newer than this code
