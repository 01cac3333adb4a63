"""The console's HTTP server (aiohttp): the static page, its JSON API and its live streams.

Read-only: every route is a GET. Every request is checked before anything is read: with
credentials configured (CONSOLE_TOKEN, CONSOLE_USERS) it needs them (401 otherwise, which
makes a browser ask); with none, it must come from this machine (403 otherwise; the console
also binds to loopback then). What a viewer receives goes through `auth.for_viewer`: numbers
masked unless the viewer's role may see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import asyncpg
from aiohttp import web

from console import metrics, store
from console.auth import LOCAL_VIEWER, Access, Viewer, for_viewer
from console.calls import Audio, Calls, NotFound
from console.live import LiveFeed, sse
from console.render import byte_range
from events.subjects import is_call_id

log = logging.getLogger("console.server")

STATIC: Final = Path(__file__).resolve().parent / "static"
PING_S: Final = 15.0  # a comment line on idle streams: proxies keep them, dead peers show
HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
}
VIEWER: Final = web.RequestKey("viewer", Viewer)
REALM: Final = 'Basic realm="Voicebot console", charset="UTF-8"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unknown"


class Console:
    """The routes, over the live feed, the calls' data and the search."""

    def __init__(
        self, access: Access, feed: LiveFeed, calls: Calls, pool: asyncpg.Pool | None
    ) -> None:
        self.access, self.feed, self.calls, self.pool = access, feed, calls, pool

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.on_response_prepare.append(_security_headers)
        app.router.add_get("/", self.index)
        app.router.add_get("/calls/{call_id}", self.call_page)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.router.add_get("/api/me", self.me)
        app.router.add_get("/api/live", self.live)
        app.router.add_get("/api/calls", self.search)
        app.router.add_get("/api/calls/{call_id}", self.call_json)
        app.router.add_get("/api/calls/{call_id}/live", self.call_live)
        app.router.add_get("/api/calls/{call_id}/waveform", self.waveform)
        app.router.add_get("/api/calls/{call_id}/audio", self.audio)
        app.router.add_get("/api/calls/{call_id}/export", self.export)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Who is asking, before anything is read; every answer counted by route."""
        viewer: Viewer | None
        if self.access.open:
            if not _loopback(request.remote):
                metrics.REFUSED.labels("not_loopback").inc()
                raise web.HTTPForbidden(text="the console serves this machine only\n")
            viewer = LOCAL_VIEWER
        else:
            viewer = self.access.check(request.headers.get("Authorization"))
        if viewer is None:
            metrics.REFUSED.labels("unauthenticated").inc()
            raise web.HTTPUnauthorized(
                text="authentication required\n", headers={"WWW-Authenticate": REALM}
            )
        request[VIEWER] = viewer
        try:
            response = await handler(request)
        except web.HTTPException as e:
            metrics.REQUESTS.labels(_route(request), str(e.status)).inc()
            raise
        metrics.REQUESTS.labels(_route(request), str(response.status)).inc()
        return response

    # --- pages --------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def call_page(self, request: web.Request) -> web.StreamResponse:
        _call_id(request)
        return web.FileResponse(STATIC / "call.html")

    async def me(self, request: web.Request) -> web.Response:
        v = _viewer(request)
        return web.json_response({"name": v.name, "role": v.role, "numbers": v.sees_numbers})

    # --- live ---------------------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.StreamResponse:
        client = self.feed.add(_viewer(request))
        if client is None:
            raise web.HTTPServiceUnavailable(text="too many live pages open\n")
        try:
            response = await _stream(request)
        except BaseException:
            self.feed.remove(client)
            raise
        try:
            while True:
                try:
                    line = await asyncio.wait_for(client.queue.get(), PING_S)
                except TimeoutError:
                    line = ": ping\n\n"
                if line is None:
                    break
                await response.write(line.encode())
        except ConnectionError:
            pass  # the browser left (its EventSource comes back if it wants more)
        finally:
            self.feed.remove(client)
        return response

    async def call_live(self, request: web.Request) -> web.StreamResponse:
        call_id = _call_id(request)
        viewer = _viewer(request)
        response = await _stream(request)
        try:
            async for model in self.calls.follow(call_id):
                await response.write(sse("model", for_viewer(model, viewer)).encode())
            await response.write(sse("ended", {"call_id": call_id}).encode())
        except ConnectionError:
            pass  # the browser left the page
        return response

    # --- one call -----------------------------------------------------------------------------

    async def call_json(self, request: web.Request) -> web.Response:
        call_id = _call_id(request)
        try:
            model = await self.calls.model(call_id)
        except NotFound:
            raise web.HTTPNotFound(text=f"no call {call_id} in the streams or archive\n") from None
        return _json(request, model)

    async def _audio(self, request: web.Request) -> Audio:
        try:
            return await self.calls.audio(_call_id(request))
        except NotFound as e:
            raise web.HTTPNotFound(text=f"{e}\n") from None

    async def waveform(self, request: web.Request) -> web.Response:
        audio = await self._audio(request)
        notes = list(audio.rendered.notes)
        return web.json_response({**audio.rendered.peaks, "source": audio.source, "notes": notes})

    async def audio(self, request: web.Request) -> web.StreamResponse:
        found = await self._audio(request)
        if found.mp3 is not None:
            return web.FileResponse(found.mp3, headers={"Content-Type": "audio/mpeg"})
        body = found.rendered.wav or b""
        try:
            part = byte_range(request.headers.get("Range"), len(body))
        except ValueError:
            raise web.HTTPRequestRangeNotSatisfiable(
                headers={"Content-Range": f"bytes */{len(body)}"}
            ) from None
        headers = {"Accept-Ranges": "bytes", "Content-Type": "audio/wav"}
        if part is None:
            return web.Response(body=body, headers=headers)
        start, end = part
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
        return web.Response(status=206, body=body[start:end], headers=headers)

    async def export(self, request: web.Request) -> web.StreamResponse:
        call_id = _call_id(request)
        if not _viewer(request).sees_numbers:
            metrics.REFUSED.labels("forbidden").inc()
            raise web.HTTPForbidden(
                text="the export file holds the caller's number: supervisors only\n"
            )
        with tempfile.TemporaryDirectory(prefix="console-export-") as tmp:
            try:
                path = await self.calls.export(call_id, Path(tmp))
            except NotFound as e:
                raise web.HTTPNotFound(text=f"{e}\n") from None
            data = await asyncio.to_thread(path.read_bytes)
        return web.Response(
            body=data,
            headers={
                "Content-Type": "application/gzip",
                "Content-Disposition": f'attachment; filename="{call_id}.jsonl.gz"',
            },
        )

    # --- search -------------------------------------------------------------------------------

    async def search(self, request: web.Request) -> web.Response:
        if self.pool is None:
            raise web.HTTPServiceUnavailable(text="no DATABASE_URL: no archive to search\n")
        try:
            query = store.Search.from_query(dict(request.query))
        except store.BadQuery as e:
            return web.json_response({"error": str(e)}, status=400)
        try:
            rows = await store.search(self.pool, query)
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            log.warning("search failed: %r", e)
            raise web.HTTPServiceUnavailable(
                text="the archive's database is not answering\n"
            ) from None
        return _json(request, {"calls": rows, "limit": query.limit})


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


def _viewer(request: web.Request) -> Viewer:
    return request[VIEWER]


def _call_id(request: web.Request) -> str:
    call_id = request.match_info["call_id"].lower()
    if not is_call_id(call_id):
        raise web.HTTPNotFound(text="not a call id\n")
    return call_id


def _json(request: web.Request, data: Any) -> web.Response:
    return web.json_response(for_viewer(data, _viewer(request)))


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    return response


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        raise
    return runner
