"""The edge's small HTTP/1.1 API for the dialplan and the orchestrator (no framework).

GET /health, GET /ready, PUT (or POST) /calls/{uuid}/caller (the dialplan registers the caller
number before `AudioSocket()`), GET /calls/{uuid}/outcome (the dialplan routes on it afterwards).
One request per connection (`Connection: close`): `CURL()` and probes need nothing more.
The write endpoint changes what the bot believes about a caller, so it needs every configured
check to pass: the peer in ALLOWED_PEERS and/or the Bearer token API_TOKEN; with neither set,
only loopback clients may write.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Final, Protocol

from edge import metrics
from edge.config import EdgeConfig, canonical_ip
from edge.registry import CallRegistry
from events.subjects import is_call_id

log = logging.getLogger("edge.http")

READ_TIMEOUT_S: Final = 5.0
MAX_HEAD_BYTES: Final = 8192
MAX_BODY_BYTES: Final = 256
_CALL_PATH: Final = re.compile(r"^/calls/([0-9A-Fa-f-]{36})/(caller|outcome)$")
_CALLER: Final = re.compile(r"^[A-Za-z0-9+*#._ -]{1,40}$")
_REASONS: Final = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    503: "Service Unavailable",
}


class Backend(Protocol):
    registry: CallRegistry

    @property
    def ready(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: str


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: str = ""


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def mask_number(number: str) -> str:
    """Enough of a phone number to recognise it in a log, not enough to call it."""
    return number[:4] + "…" if len(number) > 4 else "…"


class HttpApi:
    def __init__(self, config: EdgeConfig, backend: Backend | CallRegistry) -> None:
        self.config = config
        self._backend = backend
        self.registry = backend if isinstance(backend, CallRegistry) else backend.registry
        self._server: asyncio.Server | None = None
        self._allowed = config.allowed_ips

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the HTTP API is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.config.http_host, self.config.http_port, reuse_address=True
        )
        log.info("HTTP API listening on %s:%d", *self.address)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else "?"
        try:
            try:
                request = await asyncio.wait_for(_read_request(reader, peer), READ_TIMEOUT_S)
                response = self.handle(request)
            except TimeoutError:
                response = Response(408, "request timeout\n")
            except BadRequest as e:
                response = Response(e.status, f"{e}\n")
            writer.write(_render(response))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except (ConnectionError, TimeoutError) as e:
            log.debug("HTTP client %s went away: %r", peer, e)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), READ_TIMEOUT_S)

    # --- routing (pure: testable without sockets) ----------------------------------------

    def handle(self, req: Request) -> Response:
        if req.path == "/health":
            return Response(200, "ok\n") if req.method == "GET" else Response(405)
        if req.path == "/ready":
            if req.method != "GET":
                return Response(405)
            ready = self.registry is self._backend or getattr(self._backend, "ready", False)
            return Response(200, "ready\n") if ready else Response(503, "not ready\n")
        match = _CALL_PATH.match(req.path)
        if match is None:
            return Response(404, "not found\n")
        call_id, what = match.group(1).lower(), match.group(2)
        if not is_call_id(call_id):
            return Response(400, "not a call id\n")
        if what == "outcome":
            if req.method != "GET":
                return Response(405)
            outcome = self.registry.outcome(call_id)
            return Response(404, "unknown call\n") if outcome is None else Response(200, outcome)
        # POST too: the dialplan's CURL(url,data) can only GET or POST (no CURLOPT for a method)
        if req.method not in ("PUT", "POST"):
            return Response(405)
        return self._register_caller(req, call_id)

    def _register_caller(self, req: Request, call_id: str) -> Response:
        refusal = self._refusal(req)
        if refusal is not None:
            metrics.HTTP_REFUSALS.labels(refusal).inc()
            log.warning("[%s] refused caller registration from %s: %s", call_id, req.peer, refusal)
            return Response(403, "forbidden\n")
        try:
            caller = req.body.decode("ascii").strip()
        except UnicodeDecodeError:
            caller = ""
        if not _CALLER.match(caller):
            return Response(400, "body must be the caller number as text\n")
        self.registry.register_caller(call_id, caller)
        log.info("[%s] caller %s registered by %s", call_id, mask_number(caller), req.peer)
        return Response(204)

    def _refusal(self, req: Request) -> str | None:
        """Why the request may not write, or None when it may."""
        token, allowed = self.config.api_token, self._allowed
        if allowed and _canonical(req.peer) not in allowed:
            return "peer_not_allowed"
        if token is not None:
            given = req.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return "bad_token"
        if not allowed and token is None and not _is_loopback(req.peer):
            return "not_loopback"
        return None


def _canonical(host: str) -> str:
    try:
        return canonical_ip(host)
    except ValueError:
        return host


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(_canonical(host)).is_loopback
    except ValueError:
        return False


async def _read_request(reader: asyncio.StreamReader, peer: str) -> Request:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(400, "request head too large") from None
    except asyncio.IncompleteReadError:
        raise BadRequest(400, "incomplete request") from None
    if len(head) > MAX_HEAD_BYTES:
        raise BadRequest(400, "request head too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed request line")
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(400, "malformed header")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise BadRequest(400, "bad Content-Length") from None
    if length < 0 or length > MAX_BODY_BYTES:
        raise BadRequest(413, "body too large")
    try:
        body = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise BadRequest(400, "body shorter than Content-Length") from None
    return Request(method, target.split("?", 1)[0], headers, body, peer)


def _render(response: Response) -> bytes:
    body = response.body.encode()
    reason = _REASONS.get(response.status, "Unknown")
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body
