"""The AudioSocket server: accepts Asterisk's connections, admits calls, owns the ticker.

What the pipeline sends to the calls (bot audio, say, control, decisions, claims) is read from
JetStream through two stream tails shared by every call of this edge, so nothing published
while the edge was cut from NATS is lost: the tails resume after the last message they handed
over. Every second the edge names its live calls on `voicebot.edge.alive`, so that workers
release calls whose `ended` never reached them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import cast

from edge import metrics
from edge.call import Call, CallFailed
from edge.config import EdgeConfig, canonical_ip
from edge.framing import HANGUP_MESSAGE, SLIN_HEADER_320, Parser, ProtocolError
from edge.pacer import Ticker
from edge.playout import Playout
from edge.prebuffer import Prebuffer
from edge.registry import CallRegistry
from events import audio, codec, schemas, streams, subjects
from events.bus import Bus
from events.tail import NEW, StreamTail

log = logging.getLogger("edge.server")

BUSY_FALLBACK_S = 0.5  # silence played when the busy phrase is not cached
# The cached phrases the edge plays by itself: above the call limit, and when the pipeline is
# silent while the bot owes an answer (see silence_guard.py).
EDGE_PHRASES = ("busy", "hold", "unavailable")
ALIVE_EVERY_S = 1.0
# What the calls need from the CALLS stream (bot audio comes from AUDIO).
CALL_INPUTS = ("call.*.say", "call.*.control", "call.*.decision", "call.*.event.claimed")


def load_phrases(cache_dir: Path) -> dict[str, bytes]:
    """The edge's cached phrases, whole 320 B frames of 8 kHz s16le; missing ones are said."""
    phrases = {}
    for key in EDGE_PHRASES:
        path = cache_dir / f"{key}.raw"
        try:
            pcm = path.read_bytes()
        except OSError:
            log.warning("no cached %r phrase at %s: the edge cannot say it", key, path)
            continue
        pcm = pcm[: len(pcm) // audio.FRAME_BYTES * audio.FRAME_BYTES]
        if pcm:
            phrases[key] = pcm
    if "busy" not in phrases:
        phrases["busy"] = bytes(int(BUSY_FALLBACK_S * 50) * audio.FRAME_BYTES)
    return phrases


class BusyCall:
    """A call above MAX_CONCURRENT_CALLS: the busy phrase, paced, then a hang-up. No events."""

    def __init__(self, server: EdgeServer, transport: asyncio.Transport, call_id: str) -> None:
        self.server = server
        self.transport = transport
        self.id = call_id
        self.finished = False
        self.playout = Playout()
        self.playout.push("busy", server.phrases["busy"], last=True, interruptible=False)

    def start(self) -> None:
        self.server.ticker.add(self)

    def on_message(self, _msg: object) -> None:
        """The caller's audio is not listened to."""

    def tick(self) -> bool:
        if self.playout.idle:
            self.finish(hangup=True)
            return False
        frame, _ = self.playout.next_frame()
        self.transport.write(SLIN_HEADER_320 + frame)
        return True

    def fail(self, error: CallFailed) -> None:
        metrics.PROTOCOL_ERRORS.labels(error.code).inc()
        log.warning("[%s] busy call ended on protocol error %s: %s", self.id, error.code, error)
        self.finish(hangup=False)

    def finish(self, *, hangup: bool = False, **_: object) -> None:
        if self.finished:
            return
        self.finished = True
        self.server.ticker.remove(self)
        if not self.transport.is_closing():
            if hangup:
                self.transport.write(HANGUP_MESSAGE)
            self.transport.close()
        self.server.registry.call_ended(self.id, "hangup")
        self.server.busy.discard(self)
        log.info("[%s] busy call ended", self.id)


class Connection(asyncio.Protocol):
    """One TCP connection from Asterisk: checks the peer, waits for the UUID, feeds the call."""

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.parser = Parser(server_side=True)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.call: Call | BusyCall | None = None
        self._uuid_timer: asyncio.TimerHandle | None = None
        self._frame_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        host, port = (peername[0], peername[1]) if peername else ("?", 0)
        self.peer = f"{host}:{port}"
        allowed = self.server.allowed_ips
        if allowed and _canonical_or_raw(host) not in allowed:
            metrics.REFUSED_PEERS.inc()
            log.warning("[peer %s] refused: not in ALLOWED_PEERS", self.peer)
            self.transport.close()
            return
        self.server.connections.add(self)
        loop = asyncio.get_running_loop()
        self._uuid_timer = loop.call_later(self.server.config.uuid_timeout_s, self._no_uuid)

    def data_received(self, data: bytes) -> None:
        try:
            for msg in self.parser.feed(data):
                if self.call is None:
                    self._on_uuid(msg.payload)
                elif not self.call.finished:
                    self.call.on_message(msg)
                if self.call is None or self.call.finished:
                    return
            if self.parser.failed is not None:
                raise self.parser.failed
        except ProtocolError as e:
            self._fail(e.code, str(e))
            return
        except CallFailed as e:
            self._fail(e.code, str(e))
            return
        self._watch_partial_frame()

    def _watch_partial_frame(self) -> None:
        """A message whose remaining bytes never come would hold the call open for ever."""
        if self.parser.buffered == 0:
            if self._frame_timer is not None:
                self._frame_timer.cancel()
                self._frame_timer = None
        elif self._frame_timer is None and self.call is not None:
            loop = asyncio.get_running_loop()
            self._frame_timer = loop.call_later(
                self.server.config.frame_timeout_s, self._frame_stalled
            )

    def _frame_stalled(self) -> None:
        self._frame_timer = None
        if self.parser.buffered:
            self._fail(
                "incomplete_frame",
                f"{self.parser.buffered} B of a message, the rest not sent within "
                f"{self.server.config.frame_timeout_s:.1f} s",
            )

    def eof_received(self) -> bool:
        try:
            self.parser.eof()
        except ProtocolError as e:
            self._fail(e.code, str(e))
            return False
        if isinstance(self.call, Call):
            self.call.finish(by="caller", reason="caller_hangup")
        elif self.call is not None:
            self.call.finish()
        else:
            self._fail("no_uuid", "connection closed before the UUID")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.server.connections.discard(self)
        if isinstance(self.call, Call):
            self.call.finish(by="caller", reason="connection_lost" if exc else "caller_hangup")
        elif self.call is not None:
            self.call.finish()

    def _on_uuid(self, raw: bytes) -> None:
        self._cancel_timer()
        assert self.transport is not None
        call_id = subjects.call_id_from_bytes(raw)
        if call_id in self.server.calls:
            raise ProtocolError("duplicate_uuid", f"call {call_id} is already connected")
        self.call = self.server.admit(self.transport, call_id, self.peer)
        if self.call is None:
            self.transport.close()

    def _no_uuid(self) -> None:
        self._uuid_timer = None
        if self.call is None:
            self._fail("uuid_timeout", f"no UUID within {self.server.config.uuid_timeout_s} s")

    def _fail(self, code: str, message: str) -> None:
        self._cancel_timer()
        if self.call is not None:
            self.call.fail(CallFailed(code, message))
            return
        metrics.PROTOCOL_ERRORS.labels(code).inc()
        log.warning("[peer %s] closed before any call: %s: %s", self.peer, code, message)
        if self.transport is not None:
            self.transport.close()

    def _cancel_timer(self) -> None:
        for timer in (self._uuid_timer, self._frame_timer):
            if timer is not None:
                timer.cancel()
        self._uuid_timer = self._frame_timer = None


def _call_id_of(subject: str) -> str:
    """`call.<id>.…` -> `<id>` (a lookup key: a malformed subject simply matches no call)."""
    return subject.split(".", 2)[1] if subject.count(".") >= 2 else ""


def _canonical_or_raw(host: str) -> str:
    try:
        return canonical_ip(host)
    except ValueError:
        return host


class EdgeServer:
    def __init__(
        self, config: EdgeConfig, bus: Bus, *, registry: CallRegistry | None = None
    ) -> None:
        self.config = config
        self.bus = bus
        self.registry = registry or CallRegistry(outcome_ttl_s=config.outcome_ttl_s)
        self.allowed_ips = config.allowed_ips
        self.ticker = Ticker(on_tick=_observe_tick)
        # One for all calls: bot audio comes late for every call of a busy machine at once.
        self.prebuffer = Prebuffer(
            config.prebuffer_ms // audio.FRAME_MS, config.prebuffer_max_ms // audio.FRAME_MS
        )
        metrics.PREBUFFER.set_function(lambda: self.prebuffer.frames * audio.FRAME_MS / 1000)
        self.calls: dict[str, Call] = {}
        self.busy: set[BusyCall] = set()
        self.connections: set[Connection] = set()
        self.phrases: dict[str, bytes] = {}
        self._server: asyncio.Server | None = None
        self._call_tasks: set[asyncio.Task[None]] = set()
        self._tails: list[StreamTail] = []
        self._background: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._stopping = False

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the edge server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def ready(self) -> bool:
        return (
            self._server is not None
            and self._server.is_serving()
            and self.bus.nc.is_connected
            and not self._stopping
        )

    async def start(self) -> None:
        self.phrases = await asyncio.to_thread(load_phrases, self.config.cache_dir)
        loop = asyncio.get_running_loop()
        # Listen before accepting: a call's first `say` may follow its start within a millisecond.
        bot_audio = await self.bus.tail(
            streams.AUDIO, ["call.*.audio.out"], start=NEW, name="edge-audio-out"
        ).start()
        inputs = await self.bus.tail(
            streams.CALLS, list(CALL_INPUTS), start=NEW, name="edge-inputs"
        ).start()
        self._tails = [bot_audio, inputs]
        self._background = [
            asyncio.create_task(self._deliver_audio(bot_audio), name="edge-deliver-audio"),
            asyncio.create_task(self._deliver_inputs(inputs), name="edge-deliver-inputs"),
            asyncio.create_task(self._announce_alive(), name="edge-alive"),
        ]
        self.ticker.start()
        self._server = await loop.create_server(
            lambda: Connection(self), self.config.host, self.config.port, reuse_address=True
        )
        host, port = self.address
        log.info(
            "AudioSocket server listening on %s:%d (max %d calls, edge %s)",
            host,
            port,
            self.config.max_concurrent_calls,
            self.config.edge_id,
        )

    def admit(
        self, transport: asyncio.Transport, call_id: str, peer: str
    ) -> Call | BusyCall | None:
        if self._stopping:
            log.info("[%s] refused: the edge is shutting down", call_id)
            return None
        if len(self.calls) >= self.config.max_concurrent_calls:
            if len(self.busy) >= self.config.max_concurrent_calls:
                log.warning(
                    "[%s] refused: %d calls and %d busy calls already",
                    call_id,
                    len(self.calls),
                    len(self.busy),
                )
                return None
            metrics.BUSY_CALLS.inc()
            metrics.CALLS.labels("busy").inc()
            log.warning(
                "[%s] above MAX_CONCURRENT_CALLS=%d: playing the busy phrase",
                call_id,
                self.config.max_concurrent_calls,
            )
            busy = BusyCall(self, transport, call_id)
            self.busy.add(busy)
            self.registry.call_started(call_id)
            busy.start()
            return busy
        call = Call(self, transport, call_id, peer)
        self.calls[call_id] = call
        self._idle.clear()
        self.registry.call_started(call_id)
        metrics.ACTIVE_CALLS.inc()
        log.info("[%s] call connected from %s (%d active)", call_id, peer, len(self.calls))
        call.start()
        if call.task is not None:
            self._call_tasks.add(call.task)
            call.task.add_done_callback(self._call_tasks.discard)
        return call

    def call_finished(self, call: Call) -> None:
        if self.calls.pop(call.id, None) is None:
            return
        metrics.ACTIVE_CALLS.dec()
        metrics.CALLS.labels(call.outcome.partition(":")[0]).inc()
        self.registry.call_ended(call.id, call.outcome)
        if not self.calls:
            self._idle.set()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let calls end by themselves within `grace_s`, then hang up the rest."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.call is None and conn.transport is not None:
                conn.transport.close()
        if self.calls:
            log.info("shutting down: waiting up to %.1f s for %d calls", grace_s, len(self.calls))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=grace_s)
        for call in list(self.calls.values()):
            call.finish(by="edge", reason="shutdown")
        for busy in list(self.busy):
            busy.finish(hangup=True)
        if self._call_tasks:
            await asyncio.wait(set(self._call_tasks), timeout=5.0)
        self.ticker.stop()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for tail in self._tails:
            await tail.close()
        log.info("AudioSocket server stopped")

    # --- from the pipeline --------------------------------------------------------------------

    async def _deliver_audio(self, tail: StreamTail) -> None:
        async for msg in tail:
            call = self.calls.get(_call_id_of(msg.subject))
            if call is None:
                continue  # another edge's call, or one that ended
            try:
                out = audio.parse_out(msg.headers, msg.data)
            except audio.BadAudio as e:
                metrics.DROPPED_OUT.labels("bad_message").inc()
                log.warning("[%s] skipped bad audio.out message: %s", call.id, e)
                continue
            call.on_audio_out(out)

    async def _deliver_inputs(self, tail: StreamTail) -> None:
        async for msg in tail:
            call = self.calls.get(_call_id_of(msg.subject))
            if call is None:
                continue
            env = self.bus.decode(msg)
            if env is None:
                continue
            match env.event:
                case schemas.Say() as say:
                    call.on_say(say)
                case schemas.Decision() as decision:
                    call.on_decision(decision)
                case schemas.Claimed() as claimed:
                    call.on_claimed(claimed)
                case schemas.Control() as control:
                    call.on_control(control)

    async def _announce_alive(self) -> None:
        """Name this edge's calls every second (core NATS: nothing is stored)."""
        edge = self.config.edge_id
        while True:
            beat = schemas.EdgeAlive(
                edge=edge, ts=time.time(), interval_s=ALIVE_EVERY_S, calls=tuple(self.calls)
            )
            try:
                await self.bus.nc.publish(subjects.EDGE_ALIVE, codec.encode(beat))
                metrics.ALIVE_BEATS.inc()
            except Exception as e:
                log.debug("liveness beat not sent: %r", e)
            await asyncio.sleep(ALIVE_EVERY_S)


SKIP_LOG_EVERY_S = 10.0
_last_skip_log = [0.0]


def _observe_tick(lateness: float, frames: int, skipped: int) -> None:
    metrics.PACING_LATENESS.observe(lateness)
    if frames:
        metrics.FRAMES_OUT.inc(frames)
    if skipped:
        metrics.TICKS_SKIPPED.inc(skipped)
        now = time.monotonic()
        # An overloaded loop skips every few ticks: one line per interval, the metric counts all.
        if now - _last_skip_log[0] >= SKIP_LOG_EVERY_S:
            _last_skip_log[0] = now
            log.warning(
                "ticker ran %d frame(s) late: skipped them rather than burst "
                "(voicebot_edge_ticks_skipped_total counts every one)",
                skipped,
            )
