"""One admitted call: caller audio to the bus, bot audio from the bus to the paced writer.

Hot paths are synchronous: `on_message` (from the socket), `tick` (from the shared ticker) and
the `on_*` deliveries from the server's stream tails never await. Caller audio goes out as core
publishes from a per-call queue; events go through the call's outbox (ordered, retried until
acknowledged, `event.started` first, so a consumer never sees a call's DTMF or playback before
its start). What the pipeline sends is fenced by claim epoch (a stale owner is ignored), and a
silence guard makes the edge itself say the hold phrase when the bot owes an answer and the
pipeline is quiet. The call ends exactly once, through `finish`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from edge import metrics
from edge.framing import HANGUP_MESSAGE, SAMPLE_RATES, SLIN_HEADER_320, Kind, Message
from edge.inbound import TAIL_FROM_S, Batch, InboundBatcher
from edge.playout import Notice, Playout
from edge.resample import ToPipelineRate
from edge.silence_guard import GuardPolicy, SilenceGuard
from edge.turn_clock import After, TurnClock
from edge.vad import EnergyVad
from events import audio, codec, schemas, subjects
from events.fence import Fence

if TYPE_CHECKING:
    from edge.config import EdgeConfig
    from edge.server import EdgeServer

log = logging.getLogger("edge.call")

DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
MAX_WRITE_BUFFER: Final = 64 * 1024  # ~10 s of frames: the peer stopped reading
MAX_OUTBOX: Final = 2000  # caller audio messages waiting for NATS; beyond it audio is dropped
LOCAL: Final = "edge-"  # utterance ids of the phrases the edge plays itself
FRAME_S: Final = audio.FRAME_MS / 1000
CLOCK_SKEW: Final = 0.01
# Caller audio that may queue in the socket before the call's first tick (the loop busy with
# other calls): Asterisk's own watchdog gives up after 2 s, so more than that is a flood.
STARTUP_BACKLOG_S: Final = 2.0

By = Literal["caller", "bot", "edge"]


class CallFailed(Exception):
    """The caller's side broke the protocol or a bound; `code` labels the metric."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class _Audio:
    pcm: bytes
    headers: dict[str, str]


class Call:
    def __init__(
        self,
        server: EdgeServer,
        transport: asyncio.Transport,
        call_id: str,
        peer: str,
    ) -> None:
        cfg: EdgeConfig = server.config
        self.server = server
        self.bus = server.bus
        self.transport = transport
        self.id = call_id
        self.peer = peer
        self.playout = Playout(
            prebuffer=server.prebuffer,
            max_frames=int(cfg.max_queued_out_s / FRAME_S),
        )
        self.frames_out = 0
        self.in_bytes = 0  # 8 kHz caller audio, after resampling
        self.finished = False
        self.outcome = "hangup"
        self.fence = Fence()
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._wall0 = time.time()
        self._resample = ToPipelineRate()
        self._vad = EnergyVad(
            threshold_dbfs=cfg.vad_threshold_dbfs,
            min_speech_ms=cfg.vad_min_speech_ms,
            hangover_ms=cfg.vad_hangover_ms,
        )
        self._bargein_vad = cfg.bargein_vad
        self._hangover_s = cfg.vad_hangover_ms / 1000
        self._last_audio_at = self._t0
        self.guard = SilenceGuard(
            GuardPolicy(hold_after_s=cfg.hold_after_s, unavailable_after_s=cfg.unavailable_after_s),
            self._t0,
        )
        self._unavailable_outcome = cfg.unavailable_outcome
        self.turns = TurnClock()  # what the caller waited: metrics only
        self.turns.owe(self._t0, "start")
        # utterance -> when its first audio came (None once it started playing)
        self._first_audio: dict[str, float | None] = {}
        self._local_seq = 0
        # Ticks a batch may wait for more audio: a lone short frame still goes.
        self._inbound = InboundBatcher(
            cfg.audio_in_batch_ms * audio.FRAME_BYTES // audio.FRAME_MS,
            max_age_ticks=cfg.audio_in_batch_ms // audio.FRAME_MS + 1,
            # The tail starts while the VAD still calls it speech (its hang-over).
            tail_from_s=min(TAIL_FROM_S, cfg.vad_hangover_ms / 1000),
        )
        self._dtmf_seq = 0
        self._bargeins = 0
        self._errors = 0
        self._inbound_s = 0.0  # caller media received, for the flood bound
        # The flood clock starts at the call's first tick: audio that queued in the socket while
        # the loop was busy setting the call up is a backlog, not a flood.
        self._flood_t0: float | None = None
        self._inbound_base = 0.0
        self._max_ahead_s = cfg.inbound_max_ahead_s
        self._closing: tuple[str, str] | None = None  # (outcome, reason) once asked to end
        self._drain_deadline = 0.0
        self._drain_max_s = cfg.hangup_drain_max_s
        self._audio_out: deque[_Audio | None] = deque()
        self._wake = asyncio.Event()
        self.events = self.bus.outbox(f"edge-{call_id}")
        self.task: asyncio.Task[None] | None = None

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Pace frames from now on; announce the call (first in its outbox, so first on the
        bus, retried until acknowledged: without it no worker would ever claim the call)."""
        self.server.ticker.add(self)
        started = schemas.Started(
            call_id=self.id,
            ts=self._wall0,
            caller=self.server.registry.caller(self.id),
            peer=self.peer,
            edge=self.server.config.edge_id,
        )
        self._event("started", started, f"{self.id}:started")
        self.task = asyncio.create_task(self._run(), name=f"edge-call-{self.id}")

    async def _run(self) -> None:
        try:
            await self._drain_audio()
        finally:
            await self.events.close(timeout_s=self.server.config.outbox_close_s)

    async def _drain_audio(self) -> None:
        subject = subjects.audio_in(self.id)
        while True:
            while self._audio_out:
                item = self._audio_out.popleft()
                if item is None:
                    return
                try:
                    await self.bus.publish_audio(subject, item.pcm, item.headers)
                except Exception as e:
                    log.warning("[%s] audio.in publish failed: %r", self.id, e)
            self._wake.clear()
            await self._wake.wait()

    def _post_audio(self, item: _Audio | None) -> None:
        if item is not None and len(self._audio_out) >= MAX_OUTBOX:
            log.warning(
                "[%s] NATS is not keeping up: dropped %d B of caller audio", self.id, len(item.pcm)
            )
            return
        self._audio_out.append(item)
        self._wake.set()

    def _event(self, kind: str, event: msgspec.Struct, msg_id: str) -> None:
        self.events.put(subjects.event(self.id, kind), event, msg_id)

    # --- from the caller -----------------------------------------------------------------

    def on_message(self, msg: Message) -> None:
        """A parsed message from Asterisk; raises CallFailed to end the call as a fault."""
        if self.finished:
            return
        rate = SAMPLE_RATES.get(msg.kind)
        duration = len(msg.payload) / 2 / rate if rate else FRAME_S
        self._inbound_s += duration
        elapsed = self._loop.time() - (self._flood_t0 or 0.0)
        ahead = self._inbound_s - self._inbound_base - elapsed
        # 1 % of the call's length on top of the bound: a phone's clock may run a little fast
        # for an hour; a flood runs at several times real time and still trips within a second.
        if self._flood_t0 is None:  # before the first tick: a backlog, but a bounded one
            flooding = self._inbound_s > STARTUP_BACKLOG_S + self._max_ahead_s
        else:
            flooding = ahead > self._max_ahead_s + CLOCK_SKEW * elapsed
        if flooding:
            raise CallFailed(
                "flood",
                f"caller media runs {ahead:.2f} s ahead of real time (bound "
                f"{self._max_ahead_s:.2f} s)",
            )
        if rate:
            self._on_audio(msg.payload, rate)
        elif msg.kind == Kind.DTMF:
            self._on_dtmf(msg.payload)
        elif msg.kind == Kind.HANGUP:
            self.finish(by="caller", reason="caller_hangup_message")

    def _on_audio(self, payload: bytes, rate: int) -> None:
        pcm = self._resample.convert(payload, rate)
        if not pcm:
            return
        audio_t = self.in_bytes / 2 / audio.SAMPLE_RATE
        self.in_bytes += len(pcm)
        metrics.FRAMES_IN.inc(len(pcm) / audio.FRAME_BYTES)
        self._last_audio_at = self._loop.time()
        was_speaking = self._vad.speaking
        change = self._vad.feed(pcm)
        batch = self._inbound.add(
            pcm,
            capture_ts=time.time(),
            audio_t=audio_t,
            onset=change == "onset",
            quiet_after_speech_s=self._vad.quiet_s if was_speaking else 0.0,
        )
        if batch is not None:
            self._publish_batch(batch)
        match change:
            case "onset":
                self.guard.caller_started()
                if self._bargein_vad:
                    self._barge_in()
            case "offset":
                now = self._loop.time()
                self.guard.caller_stopped(now)
                # The VAD says so after its hang-over of quiet: the line ended that long ago.
                self._owe_if(now, now - self._hangover_s, "speech")

    def _publish_batch(self, batch: Batch) -> None:
        headers = audio.in_headers(batch.seq, batch.capture_ts, batch.audio_t)
        self._post_audio(_Audio(batch.pcm, headers))

    def _barge_in(self) -> None:
        utterance = self.playout.playing_interruptible()
        if utterance is None:
            return
        # Only the utterance being heard: a non-interruptible one queued after it still plays.
        notices, dropped = self.playout.flush(utterance, reason="bargein")
        metrics.BARGEINS.inc()
        metrics.FLUSHES.labels("vad").inc()
        log.info("[%s] barge-in over %s: dropped %d queued frames", self.id, utterance, dropped)
        self._bargeins += 1
        self._event(
            "bargein",
            schemas.BargeIn(call_id=self.id, ts=time.time(), utterance_id=utterance),
            f"{self.id}:bargein:{self._bargeins}",
        )
        self._publish_notices(notices)

    def _on_dtmf(self, payload: bytes) -> None:
        digit = payload.decode("ascii", errors="replace").upper()
        if digit not in DTMF_DIGITS:
            raise CallFailed("bad_dtmf", f"DTMF payload {payload!r} is not a DTMF digit")
        self._dtmf_seq += 1
        log.info("[%s] DTMF digit received", self.id)
        now = self._loop.time()
        self.guard.caller_stopped(now)
        self._owe_if(now, now, "dtmf")
        self._event(
            "dtmf",
            schemas.Dtmf(call_id=self.id, ts=time.time(), digit=digit, seq=self._dtmf_seq),
            f"{self.id}:dtmf:{self._dtmf_seq}",
        )

    # --- from the pipeline (the server's stream tails) ---------------------------------------

    def on_claimed(self, claimed: schemas.Claimed) -> None:
        self.fence.claimed(claimed.service, claimed.epoch)

    def on_audio_out(self, out: audio.AudioOut) -> None:
        if self.finished or not self._current("tts_worker", out.epoch, out.utterance_id):
            return
        if not out.utterance_id.startswith(LOCAL):
            self._stop_local_phrases()  # the real answer is here: no more "un instant"
            self._first_audio.setdefault(out.utterance_id, self._loop.time())
        offered = len(out.pcm) // audio.FRAME_BYTES
        overflow, late = self.playout.overflow_frames, self.playout.late_frames
        repeated = self.playout.repeated_frames
        self.playout.push(
            out.utterance_id,
            out.pcm,
            last=out.last,
            interruptible=out.interruptible,
            seq=out.seq,
        )
        if self.playout.repeated_frames != repeated:
            metrics.DROPPED_OUT.labels("repeated").inc(offered)
        if self.playout.overflow_frames != overflow:
            metrics.DROPPED_OUT.labels("queue_full").inc(self.playout.overflow_frames - overflow)
            log.warning(
                "[%s] bot audio queue full: dropped frames of %s", self.id, out.utterance_id
            )
        if self.playout.late_frames != late:
            metrics.DROPPED_OUT.labels("late").inc(offered)

    def on_say(self, say: schemas.Say) -> None:
        if self.finished or not self._current("brain", say.epoch, say.utterance_id):
            return
        # Known before its audio: a hang-up waits for it instead of clipping the goodbye.
        self.playout.expect(say.utterance_id, interruptible=say.interruptible)

    def on_decision(self, decision: schemas.Decision) -> None:
        if self.finished or not self._current("brain", decision.epoch, f"turn {decision.turn}"):
            return
        says = any(a.startswith("say") for a in decision.actions)
        self.guard.decided(decision.trigger, says)
        if not self.guard.owed:
            self.turns.nothing_owed()

    def on_control(self, control: schemas.Control) -> None:
        if self.finished or not self._current("brain", control.epoch, codec.tag_of(control)):
            return
        match control:
            case schemas.Flush(utterance_id=utterance_id):
                notices, dropped = self.playout.flush(utterance_id)
                metrics.FLUSHES.labels("control").inc()
                log.info(
                    "[%s] flush %s: dropped %d queued frames",
                    self.id,
                    utterance_id or "all",
                    dropped,
                )
                self._publish_notices(notices)
            case schemas.HangupCall(reason=reason):
                self.close_after_playout("hangup", reason)
            case schemas.Transfer(target=target):
                self.close_after_playout(f"transfer:{target}", "transfer")

    def _current(self, service: str, epoch: int, what: str) -> bool:
        """Is this from the call's current owner of `service`? A stale owner is ignored."""
        if self.fence.allows(service, epoch):
            return True
        metrics.STALE_DROPPED.labels(service).inc()
        log.warning(
            "[%s] ignored %s from a stale %s (epoch %d < %d)",
            self.id,
            what,
            service,
            epoch,
            self.fence.epoch(service),
        )
        return False

    def close_after_playout(self, outcome: str, reason: str) -> None:
        """End the call once the queued and announced audio has played (bounded)."""
        if self._closing is None:
            log.info(
                "[%s] %s requested (%s): ending after %d queued frames",
                self.id,
                outcome,
                reason,
                self.playout.queued_frames,
            )
            self._closing = (outcome, reason)
            self._drain_deadline = self._loop.time() + self._drain_max_s

    # --- the edge's own phrases, when the pipeline is silent --------------------------------

    def _guard(self, now: float) -> None:
        match self.guard.due(now):
            case "hold":
                self._play_local("hold")
            case "unavailable":
                self._stop_local_phrases()
                log.error(
                    "[%s] the pipeline did not answer for %.0f s: unavailable phrase, then %s",
                    self.id,
                    self.guard.policy.unavailable_after_s,
                    self._unavailable_outcome,
                )
                self._errors += 1
                self._event(
                    "error",
                    schemas.Error(
                        call_id=self.id,
                        ts=time.time(),
                        source="edge",
                        code="pipeline_silent",
                        message=f"no answer for {self.guard.policy.unavailable_after_s:.0f} s",
                    ),
                    f"{self.id}:error:edge:{self._errors}",
                )
                self._play_local("unavailable")
                self.close_after_playout(self._unavailable_outcome, "pipeline_silent")

    def _play_local(self, phrase: str) -> None:
        pcm = self.server.phrases.get(phrase)
        if not pcm:
            return  # not cached: nothing to play (said once at start-up)
        self._local_seq += 1
        uid = f"{LOCAL}{phrase}-{self._local_seq}"
        metrics.LOCAL_PHRASES.labels(phrase).inc()
        log.info("[%s] the pipeline is silent: the edge says %r", self.id, phrase)
        self.playout.push(uid, pcm, last=True, interruptible=phrase != "unavailable")

    def _stop_local_phrases(self) -> None:
        for uid in self.playout.utterance_ids():
            if uid.startswith(LOCAL) and not uid.startswith(f"{LOCAL}unavailable"):
                notices, _ = self.playout.flush(uid, reason="answered")
                self._publish_notices(notices)

    # --- to the caller ---------------------------------------------------------------------

    def tick(self) -> bool:
        """Write this tick's frame (or the hang-up once closing has drained)."""
        if self.finished or self.transport.is_closing():
            return False
        now = self._loop.time()
        if self._flood_t0 is None:
            self._flood_t0, self._inbound_base = now, self._inbound_s
        if self._closing is not None and (self.playout.idle or now >= self._drain_deadline):
            outcome, reason = self._closing
            self.finish(by="bot", reason=reason, outcome=outcome)
            return False
        if self._vad.speaking and now - self._last_audio_at >= self._hangover_s:
            # Asterisk sends nothing while the caller's side is silent: no audio is the end
            # of the line too, not only quiet audio.
            self._vad.reset()
            self.guard.caller_stopped(now)
            self._owe_if(now, self._last_audio_at, "speech")
        if self._closing is None:
            self._guard(now)
        underruns = self.playout.underruns
        frame, notices = self.playout.next_frame()
        self.transport.write(SLIN_HEADER_320 + frame)
        self.frames_out += 1
        if self.playout.underruns != underruns:
            metrics.UNDERRUNS.inc()
            log.debug("[%s] under-run in %s", self.id, self.playout.utterance_ids()[:1])
        if notices:
            self._publish_notices(notices)
        if (batch := self._inbound.tick()) is not None:  # the caller went quiet mid-batch
            self._publish_batch(batch)
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.fail(CallFailed("peer_not_reading", "Asterisk stopped reading our frames"))
        return True

    def _publish_notices(self, notices: list[Notice]) -> None:
        now = time.time()
        loop_now = self._loop.time()
        for n in notices:
            local = n.utterance_id.startswith(LOCAL)
            origin = "edge" if local else "tts"
            event: schemas.Playback
            match n.state:
                case "started":
                    if local:
                        self.guard.local_started()
                    else:
                        self.guard.pipeline_started()
                    self._observe_start(n.utterance_id, local, loop_now)
                    event = schemas.PlaybackStarted(
                        call_id=self.id, ts=now, utterance_id=n.utterance_id, origin=origin
                    )
                case "finished":
                    self._playback_ended(local, loop_now)
                    event = schemas.PlaybackFinished(
                        call_id=self.id,
                        ts=now,
                        utterance_id=n.utterance_id,
                        frames=n.frames,
                        origin=origin,
                    )
                case "interrupted":
                    if n.frames:  # it had started playing
                        self._playback_ended(local, loop_now)
                    event = schemas.PlaybackInterrupted(
                        call_id=self.id,
                        ts=now,
                        utterance_id=n.utterance_id,
                        frames=n.frames,
                        reason=n.reason,
                        origin=origin,
                    )
            msg_id = f"{self.id}:playback:{n.utterance_id}:{n.state}"
            self.events.put(subjects.playback(self.id), event, msg_id)

    def _owe_if(self, now: float, since: float, after: After) -> None:
        """The guard now owes the caller an answer (it does not when the caller only talked
        over the bot): start the turn's clock at the end of the line."""
        if self.guard.owed_since == now:
            self.turns.owe(since, after)

    def _observe_start(self, utterance_id: str, local: bool, now: float) -> None:
        if local:
            dead_air = self.turns.local_sound(now)
            if dead_air is not None:
                metrics.DEAD_AIR.observe(dead_air)
            return
        first = self._first_audio.get(utterance_id)
        self._first_audio[utterance_id] = None
        if first is not None:
            metrics.PLAYOUT_DELAY.observe(now - first)
        answered = self.turns.answer_started(now)
        if answered is not None:
            metrics.TURN_LATENCY.labels(answered.after).observe(answered.latency_s)
            if answered.dead_air_s is not None:
                metrics.DEAD_AIR.observe(answered.dead_air_s)

    def _playback_ended(self, local: bool, now: float) -> None:
        if local:
            self.guard.local_ended(now)
        else:
            self.guard.pipeline_ended(now)

    # --- the end ---------------------------------------------------------------------------

    def fail(self, error: CallFailed) -> None:
        metrics.PROTOCOL_ERRORS.labels(error.code).inc()
        log.warning("[%s] ending call on protocol error %s: %s", self.id, error.code, error)
        self._errors += 1
        self._event(
            "error",
            schemas.Error(
                call_id=self.id,
                ts=time.time(),
                source="edge",
                code="protocol",
                message=f"{error.code}: {error}",
                retryable=False,
            ),
            f"{self.id}:error:edge:{self._errors}",
        )
        self.finish(by="edge", reason=f"protocol:{error.code}", send_hangup=False)

    def finish(
        self,
        *,
        by: By,
        reason: str,
        outcome: str = "hangup",
        send_hangup: bool = True,
    ) -> None:
        """End the call once: tell Asterisk (0x00) unless it is gone, then tell the bus."""
        if self.finished:
            return
        self.finished = True
        self.outcome = outcome
        self.server.ticker.remove(self)
        if not self.transport.is_closing():
            if send_hangup and by != "caller":
                self.transport.write(HANGUP_MESSAGE)
            self.transport.close()
        notices, _ = self.playout.flush(None, reason=f"hangup:{by}")
        self._publish_notices(notices)
        if (batch := self._inbound.flush()) is not None:
            self._publish_batch(batch)
        now = time.time()
        duration = self._loop.time() - self._t0
        self._event(
            "hangup",
            schemas.Hangup(call_id=self.id, ts=now, by=by, reason=reason),
            f"{self.id}:hangup",
        )
        self._event(
            "ended",
            schemas.Ended(
                call_id=self.id,
                ts=now,
                reason=reason,
                outcome=outcome,
                duration_s=round(duration, 3),
                frames_in=self.in_bytes // audio.FRAME_BYTES,
                frames_out=self.frames_out,
                underruns=self.playout.underruns,
            ),
            f"{self.id}:ended",
        )
        self._post_audio(None)
        log.info(
            "[%s] call ended by %s (%s), outcome %s, %.1f s, %d frames out, %d underruns",
            self.id,
            by,
            reason,
            outcome,
            duration,
            self.frames_out,
            self.playout.underruns,
        )
        self.server.call_finished(self)
