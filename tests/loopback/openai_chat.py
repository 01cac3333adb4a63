"""A loopback OpenAI-compatible chat-completions server, scripted per test.

The real `groq` SDK (POST {base_url}/openai/v1/chat/completions) and the real `openai` SDK
(POST {base_url}/chat/completions with a base URL ending in /v1) talk to it over HTTP on
127.0.0.1. Each request takes the next step of the script: a reply (after an optional delay),
an HTTP error status, or a hang (no answer until the server closes). Requests are recorded.
Stdlib asyncio only; one request per connection ("Connection: close") unless `keep_alive`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

PATHS = ("/openai/v1/chat/completions", "/v1/chat/completions")
MODEL_PATHS = ("/openai/v1/models", "/v1/models")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Step:
    content: str | None = None  # the assistant message content of a 200 reply
    status: int = 200
    delay_s: float = 0.0  # before answering
    hang: bool = False  # never answer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the decoded JSON body

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))


@dataclass
class ChatServer:
    """`async with ChatServer() as server:` then `server.reply(...)`, `server.base_url`.

    Scripted steps are used first; with the script empty, `responder` (if given) makes the
    step from the request (a benchmark answering every utterance), else the answer is HTTP 500.
    `keep_requests=False`: nothing is recorded (a long load run). `keep_alive=True`: several
    requests per connection, as the real services allow (a load run: no connection set-up
    per utterance, which the real SDK would not pay either).
    """

    host: str = "127.0.0.1"
    port: int = 0
    responder: Callable[[Request], Step] | None = None
    keep_requests: bool = True
    keep_alive: bool = False
    # What opening a connection costs against the real service (TCP and TLS handshakes across
    # the internet, which 127.0.0.1 does not have): a connection's first answer is that late.
    connect_s: float = 0.0
    connections: int = 0  # accepted so far
    warmups: int = 0  # GET /models answered
    requests: list[Request] = field(default_factory=list)
    _script: deque[Step] = field(default_factory=deque)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _received: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # --- script -----------------------------------------------------------------------------

    def reply(self, content: str, *, delay_s: float = 0.0) -> None:
        self._script.append(Step(content=content, delay_s=delay_s))

    def error(self, status: int, *, delay_s: float = 0.0) -> None:
        self._script.append(Step(status=status, delay_s=delay_s))

    def hang(self) -> None:
        self._script.append(Step(hang=True))

    @property
    def pending(self) -> int:
        """Scripted steps not used yet."""
        return len(self._script)

    async def wait_requests(self, n: int, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s), self._received:
            await self._received.wait_for(lambda: len(self.requests) >= n)

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """For the groq SDK (it adds /openai/v1/...). The openai SDK wants f"{base_url}/v1"."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- HTTP -------------------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            first = True
            while await self._serve(reader, writer, setup_s=self.connect_s if first else 0.0):
                if not self.keep_alive:
                    break
                first = False
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (its timeout): nothing to answer
        except asyncio.CancelledError:
            pass  # our own close(), a kept-alive connection idle: end quietly
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, setup_s: float = 0.0
    ) -> bool:
        """One request; False when the connection should close."""
        head = await reader.readuntil(b"\r\n\r\n")
        if setup_s:
            await asyncio.sleep(setup_s)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (h.partition(":") for h in header_lines if h)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method == "GET" and path in MODEL_PATHS:
            # A client opening its connection ahead of need: not a scripted step, not recorded.
            self.warmups += 1
            await _respond(writer, 200, {"object": "list", "data": []}, self.keep_alive)
            return True
        request = Request(method, path, headers, json.loads(body) if body else None)
        if self.keep_requests:
            async with self._received:
                self.requests.append(request)
                self._received.notify_all()
        if method != "POST" or path not in PATHS:
            await _respond(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return False
        if self._script:
            step = self._script.popleft()
        elif self.responder is not None:
            step = self.responder(request)
        else:
            step = Step(status=500)
        if step.hang:
            await self._closing.wait()
            return False
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.status != 200:
            error = {"message": f"scripted HTTP {step.status}", "type": "server_error"}
            await _respond(writer, step.status, {"error": error}, self.keep_alive)
            return True
        await _respond(writer, 200, self._completion(request, step.content), self.keep_alive)
        return True

    def _completion(self, request: Request, content: str | None) -> dict[str, Any]:
        n = next(self._ids)
        return {
            "id": f"chatcmpl-loopback-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.body.get("model", "loopback"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "system_fingerprint": None,
            "x_groq": {"id": f"req_loopback_{n}"},
        }


async def _respond(
    writer: asyncio.StreamWriter, status: int, payload: dict[str, Any], keep_alive: bool = False
) -> None:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
