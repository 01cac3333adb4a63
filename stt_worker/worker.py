"""The STT worker: claims calls, streams their audio into the provider, publishes transcripts.

Each call is owned by one instance through the `stt_worker` claim consumer (events/claims.py).
The owner reads the call's `audio.in` from the AUDIO stream, feeds the provider, and publishes
what it hears on `call.<id>.transcript` with a per-call monotonic `seq` and its claim epoch (the
`Nats-Msg-Id` is `<id>:stt:<epoch>:<seq>`, so a retried publish is stored once, and a stale
owner's transcripts never collide with the new owner's). A takeover resumes after the last
transcript of the dead owner that receivers took and re-reads the audio from there; a `gap` is
published first only if the stream no longer holds part of that audio.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

from events import audio, codec, schemas, streams, subjects
from events.bus import Bus
from events.claims import CallClaims, Claim
from events.fence import Fence
from stt_worker import metrics
from stt_worker.config import SttConfig
from stt_worker.follow import ExpectationTracker
from stt_worker.providers.base import (
    Heard,
    ProviderError,
    ProviderTimeout,
    SttContext,
    SttProvider,
)

log = logging.getLogger("stt_worker")

CATCH_UP_IDLE_S: Final = 0.3  # after the call ended: audio quiet this long means all is read
CATCH_UP_MAX_S: Final = 3.0
RESTART_BACKOFF_S: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
TIMELINE_KEEP_S: Final = 60.0
# A takeover re-reads the call's audio from the AUDIO stream; a gap is reported only when the
# stream no longer holds the start of what the dead owner left untranscribed (beyond a frame
# of rounding). A gap makes the brain ask the caller to repeat: never for audio that was heard.
GAP_TOLERANCE_S: Final = 0.03


@dataclass(frozen=True, slots=True)
class _Anchor:
    stream_t: float  # provider-stream seconds at the chunk's first sample
    audio_t: float  # call-audio seconds of the same sample (edge header)
    capture_ts: float  # wall clock at which the edge read it


@dataclass
class Timeline:
    """Maps provider-stream time (seconds fed so far) to call-audio time and capture wall time.

    Chunks may skip (a takeover resumes mid-call, the edge drops a frame): each chunk anchors
    its own first sample, and a time inside it is the anchor plus the offset.
    """

    fed_s: float = 0.0
    first_audio_t: float | None = None  # call-audio time of the stream's first sample
    _anchors: list[_Anchor] = field(default_factory=list)
    _keys: list[float] = field(default_factory=list)

    def add(self, chunk: audio.AudioIn) -> None:
        if self.first_audio_t is None:
            self.first_audio_t = chunk.audio_t
        self._anchors.append(_Anchor(self.fed_s, chunk.audio_t, chunk.capture_ts))
        self._keys.append(self.fed_s)
        self.fed_s += len(chunk.pcm) / 2 / audio.SAMPLE_RATE
        if self.fed_s - self._keys[0] > 2 * TIMELINE_KEEP_S:
            cut = bisect.bisect_left(self._keys, self.fed_s - TIMELINE_KEEP_S)
            del self._anchors[:cut], self._keys[:cut]

    def restart(self) -> None:
        """A new provider stream counts its time from zero."""
        self.fed_s = 0.0
        self.first_audio_t = None
        self._anchors.clear()
        self._keys.clear()

    def _anchor(self, stream_t: float) -> _Anchor | None:
        if not self._anchors:
            return None
        i = max(0, bisect.bisect_right(self._keys, stream_t) - 1)
        return self._anchors[i]

    def audio_t(self, stream_t: float) -> float:
        a = self._anchor(stream_t)
        return stream_t if a is None else a.audio_t + (stream_t - a.stream_t)

    def capture_ts(self, stream_t: float) -> float | None:
        a = self._anchor(stream_t)
        return None if a is None else a.capture_ts + (stream_t - a.stream_t)


def resume_point(last: Any) -> float:
    """Call-audio time up to which the previous owner's transcripts cover the call."""
    match last:
        case schemas.Final(end=end) | schemas.UtteranceEnd(last_word_end=end):
            return float(end)
        case schemas.SpeechStarted(at=at):
            return float(at)  # the utterance it was hearing was never finished
        case schemas.Interim(start=start):
            return float(start)
        case schemas.Gap(to_s=to_s):
            return float(to_s)
        case _:
            return 0.0


def last_accepted(history: list[Any]) -> tuple[schemas.Transcript | None, int]:
    """The last transcript that receivers took, and the seq to go on from.

    Receivers (the brain) drop a transcript from an older epoch than the newest `stt_worker`
    claim stored before it (events/fence.py). A dead owner can still have its last words stored
    after our claim (a publish retried through a NATS leader election): those are dropped, so
    they cover nothing. Resuming after them instead left a line, or a `gap` that should have
    made the bot ask to repeat, unheard by anyone."""
    fence = Fence()
    last: schemas.Transcript | None = None
    seq = 0
    for event in history:
        match event:
            case schemas.Claimed(service="stt_worker", epoch=epoch):
                fence.claimed("stt_worker", epoch)
            case schemas.Transcript(epoch=epoch) as transcript:
                seq = max(seq, transcript.seq + 1)  # seqs are never reused, dropped or not
                if fence.allows("stt_worker", epoch):
                    last = transcript
    return last, seq


class CallTranscriber:
    """One call, from claim to the end of its audio."""

    def __init__(self, bus: Bus, provider: SttProvider, config: SttConfig, claim: Claim) -> None:
        self.bus = bus
        self.provider = provider
        self.config = config
        self.claim = claim
        self.started = claim.started
        self.takeover = claim.takeover
        self.cid = claim.call_id
        self.seq = 0
        self.resume_from = 0.0
        self.covered_to = 0.0  # call-audio time up to which transcripts cover the call
        self.timeline = Timeline()
        self.ended = asyncio.Event()
        self.audio_done = False
        self._queue: asyncio.Queue[audio.AudioIn | None] = asyncio.Queue()
        self._last_audio_at = time.monotonic()
        self._last_pending = 0
        self._gap_sent = not self.takeover
        self.context = SttContext()  # what the dialog waits for, followed from its decisions

    async def run(self) -> None:
        start_time = await self._prepare()
        log.info(
            "[%s] transcribing (provider %s%s)",
            self.cid,
            self.provider.name,
            f", takeover from {self.resume_from:.2f} s, seq {self.seq}" if self.takeover else "",
        )
        watcher = asyncio.create_task(self._follow_call(), name=f"stt-follow-{self.cid}")
        pump = asyncio.create_task(self._pump_audio(start_time), name=f"stt-audio-{self.cid}")
        closer = asyncio.create_task(self._close_after_end(pump), name=f"stt-close-{self.cid}")
        try:
            await self._transcribe()
        finally:
            tasks = (watcher, pump, closer)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.error("[%s] call task failed: %r", self.cid, result)
        log.info("[%s] transcription ended after %d events", self.cid, self.seq)

    async def _prepare(self) -> float | None:
        """Seq and audio start: from the beginning, or after the last transcript of the dead
        owner that receivers took (see `last_accepted`)."""
        if not self.takeover:
            return None
        metrics.TAKEOVERS.inc()
        history = await self.bus.history(
            [subjects.transcript(self.cid), subjects.event(self.cid, "claimed")]
        )
        last, self.seq = last_accepted([env.event for env in history])
        self.resume_from = self.covered_to = resume_point(last)
        # The AUDIO stream is searched by the time NATS stored a message, not by audio time:
        # re-read a bounded stretch and skip by audio time what the dead owner transcribed.
        return max(self.started.ts, time.time() - self.config.takeover_rewind_s)

    # --- audio in ---------------------------------------------------------------------

    async def _pump_audio(self, start_time: float | None) -> None:
        subject = subjects.audio_in(self.cid)
        async for msg in self.bus.replay_raw(subject, start_time=start_time):
            self._last_audio_at = time.monotonic()
            with contextlib.suppress(Exception):
                self._last_pending = msg.metadata.num_pending
            try:
                chunk = audio.parse_in(msg.headers, msg.data)
            except audio.BadAudio as e:
                metrics.BAD_AUDIO.inc()
                log.warning("[%s] skipped audio.in: %s", self.cid, e)
                continue
            end_t = chunk.audio_t + len(chunk.pcm) / 2 / audio.SAMPLE_RATE
            if end_t <= self.resume_from:
                continue  # already transcribed by the previous owner
            self._queue.put_nowait(chunk)

    async def _follow_call(self) -> None:
        """The call's end, and what the dialog expects (`decision.expecting`, for the
        recogniser), from one stream tail: a consumer per call, not one per kind of message
        (nats-server keeps a bounded number of consumers per stream)."""
        tracker = ExpectationTracker(self.context)
        cid = self.cid
        async with self.bus.tail(
            streams.CALLS, [f"call.{cid}.event.>", subjects.decision(cid)], name=f"stt-{cid}"
        ) as tail:
            async for msg in tail:
                env = self.bus.decode(msg)
                match env.event if env is not None else None:
                    case schemas.Decision() as decision:
                        tracker.apply(decision)
                    case schemas.Ended() | schemas.Hangup():
                        self.ended.set()

    async def _close_after_end(self, pump: asyncio.Task[None]) -> None:
        """Once the call ended, read what audio is left, then end the provider's input."""
        await self.ended.wait()
        deadline = time.monotonic() + CATCH_UP_MAX_S
        while time.monotonic() < deadline and not pump.done():
            idle = time.monotonic() - self._last_audio_at
            if idle >= CATCH_UP_IDLE_S and self._last_pending == 0:
                break
            await asyncio.sleep(0.05)
        pump.cancel()
        self._queue.put_nowait(None)

    async def _audio(self) -> AsyncIterator[bytes]:
        next_t: float | None = None  # call-audio time the next chunk should start at
        while (chunk := await self._queue.get()) is not None:
            if not self._gap_sent:
                self._gap_sent = True
                if chunk.audio_t > self.resume_from + GAP_TOLERANCE_S:
                    await self._publish_gap(self.resume_from, chunk.audio_t, "takeover")
            elif next_t is not None and chunk.audio_t > next_t + GAP_TOLERANCE_S:
                # The edge numbers caller audio by the samples it received, so a jump is audio
                # that never reached the stream (published while a cluster had no AUDIO
                # leader): the caller may have said something the bot will never hear.
                await self._publish_gap(next_t, chunk.audio_t, "audio_lost")
            next_t = chunk.audio_t + len(chunk.pcm) / 2 / audio.SAMPLE_RATE
            self.timeline.add(chunk)
            yield chunk.pcm
        self.audio_done = True

    # --- provider -----------------------------------------------------------------------

    async def _transcribe(self) -> None:
        failures = 0
        while not self.audio_done:
            self.timeline.restart()
            try:
                async for heard in self.provider.stream(
                    self._audio(), call_id=self.cid, context=self.context
                ):
                    failures = 0
                    await self._publish_heard(heard)
                return
            except ProviderError as e:
                code = "provider_timeout" if isinstance(e, ProviderTimeout) else "provider_error"
                await self._publish_error(code, str(e), retryable=e.retryable)
            except Exception as e:
                log.exception("[%s] provider %s failed", self.cid, self.provider.name)
                await self._publish_error("provider_error", repr(e), retryable=True)
                code = "provider_error"
            # What the failed stream was fed but never transcribed: the caller may repeat.
            tl = self.timeline
            if tl.first_audio_t is not None:
                from_s = max(self.covered_to, tl.first_audio_t)
                await self._publish_gap(from_s, tl.audio_t(tl.fed_s), code)
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            failures += 1
            await asyncio.sleep(delay)

    # --- publishing ---------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        seq, self.seq = self.seq, self.seq + 1
        return {
            "call_id": self.cid,
            "ts": time.time(),
            "epoch": self.claim.epoch,
            "provider": self.provider.name,
            "seq": seq,
        }

    def _to_event(self, heard: Heard) -> schemas.Transcript | None:
        tl = self.timeline
        match heard.kind:
            case "speech_started":
                return schemas.SpeechStarted(**self._common(), at=tl.audio_t(heard.start))
            case "utterance_end":
                return schemas.UtteranceEnd(**self._common(), last_word_end=tl.audio_t(heard.end))
            case "interim":
                return schemas.Interim(
                    **self._common(),
                    text=heard.text,
                    confidence=heard.confidence,
                    start=tl.audio_t(heard.start),
                    end=tl.audio_t(heard.end),
                )
            case "final":
                captured = tl.capture_ts(heard.end)
                common = self._common()
                if heard.provider:
                    common["provider"] = heard.provider
                latency = None if captured is None else (common["ts"] - captured) * 1000
                return schemas.Final(
                    **common,
                    text=heard.text,
                    confidence=heard.confidence,
                    speech_final=heard.speech_final,
                    start=tl.audio_t(heard.start),
                    end=tl.audio_t(heard.end),
                    words=tuple(
                        schemas.Word(
                            word=w.word,
                            start=tl.audio_t(w.start),
                            end=tl.audio_t(w.end),
                            confidence=w.confidence,
                        )
                        for w in heard.words
                    ),
                    latency_ms=latency,
                    no_speech_prob=heard.no_speech_prob,
                    avg_logprob=heard.avg_logprob,
                )
        return None

    async def _publish_heard(self, heard: Heard) -> None:
        event = self._to_event(heard)
        if event is None:
            return
        match event:
            case schemas.Final(end=end) | schemas.UtteranceEnd(last_word_end=end):
                self.covered_to = max(self.covered_to, end)
        if isinstance(event, schemas.Final) and event.latency_ms is not None:
            metrics.FINAL_LATENCY.labels(self.provider.name).observe(event.latency_ms / 1000)
            log.info(
                "[%s] final %.2f-%.2f s, latency %.0f ms, %d chars, logprob %s",
                self.cid,
                event.start,
                event.end,
                event.latency_ms,
                len(event.text),
                "-" if event.avg_logprob is None else f"{event.avg_logprob:.2f}",
            )
        await self._publish(event)

    async def _publish_gap(self, from_s: float, to_s: float, reason: str) -> None:
        gap = schemas.Gap(**self._common(), from_s=from_s, to_s=max(from_s, to_s), reason=reason)
        log.info("[%s] %s gap %.2f-%.2f s", self.cid, reason, gap.from_s, gap.to_s)
        await self._publish(gap)

    async def _publish(self, event: schemas.Transcript) -> None:
        try:
            await self.bus.publish(
                subjects.transcript(self.cid),
                event,
                msg_id=f"{self.cid}:stt:{event.epoch}:{event.seq}",
            )
            metrics.TRANSCRIPTS.labels(self.provider.name, codec.tag_of(event)).inc()
        except Exception as e:
            log.warning("[%s] transcript %d not published: %s", self.cid, event.seq, e)

    async def _publish_error(self, code: str, message: str, *, retryable: bool) -> None:
        metrics.PROVIDER_ERRORS.labels(self.provider.name, code).inc()
        log.warning("[%s] %s: %s; restarting the provider stream", self.cid, code, message)
        error = schemas.Error(
            call_id=self.cid,
            ts=time.time(),
            epoch=self.claim.epoch,
            source="stt",
            code=code,
            message=message,
            retryable=retryable,
        )
        try:
            await self.bus.publish(
                subjects.event(self.cid, "error"),
                error,
                msg_id=f"{self.cid}:stt:error:{time.time_ns()}",
            )
        except Exception as e:
            log.warning("[%s] error event not published: %s", self.cid, e)


class SttWorker:
    """One STT instance: the provider (and its process pool) plus the claims loop."""

    def __init__(self, config: SttConfig, bus: Bus) -> None:
        self.config = config
        self.bus = bus
        self._provider: SttProvider | None = None
        self._pool: Any = None
        self._claims: asyncio.Task[None] | None = None
        self.claims: CallClaims | None = None  # the calls held: `claims.held`

    @property
    def provider_name(self) -> str:
        return self.config.provider

    @property
    def pool_workers(self) -> int:
        return self.config.stt_workers if self.config.provider == "whisper" else 0

    async def start(self) -> None:
        self._provider = await self._make_provider()
        self.claims = CallClaims(self.bus, streams.CLAIMS["stt_worker"], self._on_call)
        self._claims = asyncio.create_task(self.claims.run(), name="stt-claims")
        self._claims.add_done_callback(_log_end)

    async def _make_provider(self) -> SttProvider:
        cfg = self.config
        if cfg.provider == "deepgram":
            try:
                from stt_worker.providers.deepgram import DeepgramStt
            except ImportError as e:
                raise RuntimeError(f"STT_PROVIDER=deepgram but its provider is missing: {e}") from e
            provider: SttProvider = DeepgramStt(cfg)
            return provider
        from stt_worker.model_store import ensure_model
        from stt_worker.providers.whisper_local import WhisperLocalStt, WhisperPool
        from stt_worker.turn import TurnConfig

        model_dir = await asyncio.to_thread(ensure_model, cfg.whisper_cache_dir)
        pool = WhisperPool(model_dir, workers=cfg.stt_workers, threads=cfg.whisper_threads)
        began = time.monotonic()
        await pool.start()
        self._pool = pool
        log.info(
            "whisper pool ready: %d process(es) in %.1f s",
            cfg.stt_workers,
            time.monotonic() - began,
        )
        turn = TurnConfig(
            min_speech_ms=cfg.vad_min_speech_ms,
            pause_ms=cfg.vad_pause_ms,
            end_ms=cfg.vad_min_silence_ms,
            max_utterance_ms=cfg.vad_max_utterance_ms,
        )
        return WhisperLocalStt(
            pool, turn=turn, prompt=cfg.whisper_prompt, timeout_s=cfg.api_timeout_s
        )

    async def _on_call(self, claim: Claim) -> None:
        assert self._provider is not None
        metrics.CALLS_ACTIVE.inc()
        try:
            await CallTranscriber(self.bus, self._provider, self.config, claim).run()
        finally:
            metrics.CALLS_ACTIVE.dec()

    async def stop(self) -> None:
        if self._claims is not None:
            self._claims.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._claims
            self._claims = None
        if self._pool is not None:
            await self._pool.stop()
            self._pool = None


def _log_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("stt claims loop died: %r", task.exception())
