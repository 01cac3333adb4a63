"""A loopback OpenAI-compatible speech server: POST /v1/audio/speech streams real 24 kHz PCM.

Driven through the real `openai` SDK in tests and benchmarks. Each request follows a script:
a sine tone (frequency, duration), a delay before the response head, an error status, or a
stall after some audio. The server records every request, whether it finished, and whether the
client went away mid-stream (a cancelled synthesis). Standard library and asyncio only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

RATE_HZ = 24000


@dataclass(frozen=True, kw_only=True)
class SpeechScript:
    frequency_hz: float = 1000.0
    # A sweep from `frequency_hz` to this over the duration: no two 20 ms frames alike, so a
    # test can tell from the audio which part of an utterance was heard (and if twice).
    sweep_to_hz: float | None = None
    duration_s: float = 0.5
    amplitude: int = 8000
    delay_s: float = 0.0  # before the response head (the provider's time to first byte)
    status: int = 200  # anything else: an OpenAI-style JSON error
    stall_after_s: float | None = None  # audio sent, then the stream hangs until the client leaves
    chunk_s: float = 0.1  # audio per HTTP chunk
    pace_s: float = 0.0  # wait between chunks (0: as fast as the socket takes them)


@dataclass
class SpeechRequest:
    body: dict[str, object]
    authorization: str
    received_at: float
    bytes_sent: int = 0
    completed: bool = False
    cancelled: bool = False  # the client closed the stream before its end


@functools.lru_cache(maxsize=64)
def sine(script: SpeechScript) -> bytes:
    samples = round(script.duration_s * RATE_HZ)
    f0 = script.frequency_hz
    # Linear chirp: phase(t) = 2π (f0 t + (f1 - f0) t² / 2d); a plain tone when f1 == f0.
    slope = ((script.sweep_to_hz or f0) - f0) / max(script.duration_s, 1e-9)
    wave = (
        round(
            script.amplitude
            * math.sin(2 * math.pi * (f0 * (n / RATE_HZ) + slope * (n / RATE_HZ) ** 2 / 2))
        )
        for n in range(samples)
    )
    return array("h", wave).tobytes()


@dataclass
class OpenAISpeechServer:
    api_key: str = "test-key"
    script: SpeechScript = field(default_factory=SpeechScript)  # when `queue` is empty
    queue: list[SpeechScript] = field(default_factory=list)  # consumed one per request
    # With the queue empty: the script for a request's JSON body (a benchmark whose audio
    # lasts as long as the text would), else `script`.
    script_for: Callable[[dict[str, object]], SpeechScript] | None = None
    keep_requests: bool = True  # False: nothing recorded (a long load run)
    requests: list[SpeechRequest] = field(default_factory=list)
    port: int = 0
    # What opening a connection costs against the real service (TCP and TLS handshakes across
    # the internet, which 127.0.0.1 does not have): a connection's first answer is that late.
    connect_s: float = 0.0
    connections: int = 0  # accepted so far
    warmups: int = 0  # GET /v1/models answered
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def __aenter__(self) -> OpenAISpeechServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 5.0) -> None:
        """Wait until `predicate()` holds (checked on every request change) or fail."""
        assert self._changed is not None
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    # --- HTTP -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        setup_s = self.connect_s
        try:
            while await self._one_request(reader, writer, setup_s=setup_s):
                setup_s = 0.0
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Our own stop(): end quietly (start_server logs a cancelled handler as an error).
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, setup_s: float = 0.0
    ) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the client closed an idle keep-alive connection
        if setup_s:
            await asyncio.sleep(setup_s)
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method == "GET" and path.split("?")[0] == "/v1/models":
            # A client opening its connection ahead of need: not a speech request.
            self.warmups += 1
            models = json.dumps({"object": "list", "data": []}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(models), models)
            )
            await writer.drain()
            await self._notify()
            return True
        if method != "POST" or path.split("?")[0] != "/v1/audio/speech":
            await self._error(writer, 404, "not found")
            return True
        auth = headers.get("authorization", "")
        request = SpeechRequest(json.loads(body or b"{}"), auth, time.monotonic())
        if self.keep_requests:
            self.requests.append(request)
            await self._notify()
        if auth != f"Bearer {self.api_key}":
            await self._error(writer, 401, "Incorrect API key provided")
            return True
        if self.queue:
            script = self.queue.pop(0)
        elif self.script_for is not None:
            script = self.script_for(request.body)
        else:
            script = self.script
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        if script.status != 200:
            await self._error(writer, script.status, f"scripted failure {script.status}")
            return True
        return await self._stream(reader, writer, request, script)

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: SpeechRequest,
        script: SpeechScript,
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: audio/pcm\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        pcm = sine(script)
        step = max(2, round(script.chunk_s * RATE_HZ) * 2)
        stall_at = len(pcm)
        if script.stall_after_s is not None:
            stall_at = round(script.stall_after_s * RATE_HZ) * 2
        # A keep-alive client sends nothing while it reads a response: EOF means it went away.
        gone = asyncio.ensure_future(reader.read(1))
        try:
            for start in range(0, min(stall_at, len(pcm)), step):
                if gone.done():
                    break
                chunk = pcm[start : min(start + step, stall_at)]
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                request.bytes_sent += len(chunk)
                if script.pace_s:
                    await asyncio.wait([gone], timeout=script.pace_s)
            if stall_at < len(pcm) and not gone.done():
                await gone  # hang until the client gives up
            if gone.done():
                request.cancelled = True
                return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            request.completed = True
            return True
        except ConnectionError:
            request.cancelled = True
            return False
        finally:
            gone.cancel()
            # Let the cancelled read let go of the reader before the next request reads it.
            await asyncio.gather(gone, return_exceptions=True)
            await self._notify()

    async def _error(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        body = json.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "code": str(status)}}
        ).encode()
        writer.write(
            f"HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await self._notify()
