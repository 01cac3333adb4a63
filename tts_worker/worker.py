"""The TTS worker: owns calls, turns their `say` events into audio.out messages.

One task per owned call follows everything the call publishes on CALLS (`call.<id>.>`) and
dispatches on the event type: a `say` joins the call's queue (spoken strictly in order), a
`control flush` cancels the utterance being spoken (its provider stream is closed at once and
nothing more is published for it) and drops queued ones, `event.ended` ends the call.

Cached phrases go out from RAM with no provider call. Dynamic text is normalised, cut into
sentences and synthesized sentence by sentence; each sentence's native-rate audio (from the LRU,
the primary provider, or the offline voice after a failure) feeds one resampler per utterance,
so the 8 kHz signal is continuous across chunk, sentence and frame boundaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

from nats.js.errors import NotFoundError

from events import schemas, streams, subjects
from events.audio import FRAME_BYTES, BadAudio, out_headers, parse_out
from events.bus import Bus
from events.claims import CallClaims, Claim
from events.fence import Fence
from events.phrases import PHRASES
from tts_worker import metrics, phrase_cache
from tts_worker.config import TtsConfig
from tts_worker.frames import Packer, batch_bytes
from tts_worker.pronounce import normalise, sentences
from tts_worker.providers.base import ProviderError, ProviderTimeout
from tts_worker.providers.espeak import EspeakProvider
from tts_worker.providers.openai import OpenAIProvider
from tts_worker.resample import AudioPool, PoolFailure, ResampleStream

log = logging.getLogger("tts_worker")

# An utterance's first message goes before a whole AUDIO_OUT_BATCH_MS batch is there, with
# 80 ms: more than the EDGE_PREBUFFER_MS (40 ms) the edge waits for before it plays, because
# the next message comes one provider chunk later (100 ms streamed at about 3x real time:
# 33 ms), and with only 40 ms queued, a TTS worker or NATS 10 ms late under load ran the edge
# dry on the utterance's third frame (most under-runs at 200 calls). 80 ms still fits in the
# first 100 ms chunk (1,568 B resampled), so the first message leaves no later.
FIRST_MESSAGE_BYTES = 4 * FRAME_BYTES


class NativeVoice(Protocol):
    """A provider that hands its audio at its own rate, for continuous per-utterance resampling."""

    name: str
    native_rate: int

    @property
    def identity(self) -> tuple[str, str, str]: ...

    def speak_native(self, text: str, speed: float = 1.0) -> AsyncGenerator[bytes, None]: ...


class SentenceCache:
    """LRU of synthesized sentences (native-rate PCM) keyed by text and voice identity."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ...], bytes] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> bytes | None:
        pcm = self._items.get(key)
        if pcm is not None:
            self._items.move_to_end(key)
        metrics.LRU.labels("hit" if pcm is not None else "miss").inc()
        return pcm

    def put(self, key: tuple[str, ...], pcm: bytes) -> None:
        if self.size <= 0 or not pcm:
            return
        self._items[key] = pcm
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class TtsWorker:
    def __init__(self, config: TtsConfig, bus: Bus, *, pool: AudioPool | None = None) -> None:
        self.config = config
        self.bus = bus
        self._own_pool = pool is None
        self.pool = pool or AudioPool(config.pool_workers)
        self.offline = EspeakProvider(self.pool, voice=config.espeak_voice, rate=config.espeak_rate)
        self.primary: NativeVoice = self.offline
        self._openai: OpenAIProvider | None = None
        if config.provider == "openai" and config.openai_api_key:
            self._openai = OpenAIProvider(
                self.pool,
                api_key=config.openai_api_key,
                base_url=config.openai_base_url,
                model=config.openai_model,
                voice=config.openai_voice,
                timeout_s=config.timeout_s,
            )
            self.primary = self._openai
        self.phrases: dict[str, bytes] = {}
        self.sentence_cache = SentenceCache(config.lru_size)
        self.batch = batch_bytes(config.batch_ms)
        self.calls: dict[str, CallSpeech] = {}
        self._claims_task: asyncio.Task[None] | None = None

    @property
    def phrases_loaded(self) -> int:
        return len(self.phrases)

    @property
    def pool_workers(self) -> int:
        return self.pool.workers

    async def start(self) -> None:
        await self.pool.start()
        if self._openai is not None:
            await self._openai.warm()  # the SDK's first-request set-up, not on a call (brain)
        self.phrases = await self._phrase_cache(self.config.cache_dir)
        claims = CallClaims(self.bus, streams.CLAIMS["tts_worker"], self._on_call)
        self._claims_task = asyncio.create_task(claims.run(), name="tts_worker-claims")
        log.info(
            "tts worker ready: voice %s, %d phrases cached, %d pool processes",
            self.primary.name,
            self.phrases_loaded,
            self.pool_workers,
        )

    async def _phrase_cache(self, cache_dir: Path) -> dict[str, bytes]:
        missing = phrase_cache.stale(cache_dir)
        if missing:
            # The offline voice makes the whole set in well under a second, and costs nothing.
            log.info("phrase cache %s: generating %d phrases with espeak", cache_dir, len(missing))
            for line in await phrase_cache.generate(cache_dir, self.offline, keys=missing):
                log.info("phrase cache: %s", line)
        return phrase_cache.load(cache_dir)

    async def stop(self) -> None:
        if self._claims_task is not None:
            self._claims_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._claims_task
            self._claims_task = None
        if self._openai is not None:
            await self._openai.close()
        if self._own_pool:
            await self.pool.close()

    async def _on_call(self, claim: Claim) -> None:
        call = CallSpeech(self, claim)
        self.calls[claim.call_id] = call
        metrics.ACTIVE_CALLS.inc()
        # The provider's connection, while the welcome (a cached phrase) plays.
        warm = asyncio.ensure_future(self._openai.warm()) if self._openai else None
        try:
            await call.run(claim.takeover)
        finally:
            if warm is not None:
                warm.cancel()
            metrics.ACTIVE_CALLS.dec()
            del self.calls[claim.call_id]


class _Outlet:
    """Publishes one utterance: batches of whole frames, a sequence, `last` on the final one,
    stamped with the owner's claim epoch (the edge ignores a stale owner's audio)."""

    def __init__(self, worker: TtsWorker, say: schemas.Say, claim: Claim) -> None:
        self.bus = worker.bus
        self.say = say
        self.claim = claim
        self.subject = subjects.audio_out(say.call_id)
        self.packer = Packer(worker.batch, first=min(worker.batch, FIRST_MESSAGE_BYTES))
        self.seq = 0
        self._leading = True  # no sound pushed yet

    async def push(self, pcm: bytes) -> None:
        if self._leading:
            # Digital silence before the first sound is not sent: the caller hears the answer
            # that much sooner (espeak puts 40 ms of it before a first plosive: "Puis-je",
            # "Pardon", "Tapez" in the cached phrases). Whole samples only.
            silent = len(pcm) - len(pcm.lstrip(b"\0"))
            silent -= silent % 2
            self._leading = silent == len(pcm)
            pcm = pcm[silent:]
        for message in self.packer.push(pcm):
            await self._send(message, last=False)

    async def finish(self) -> None:
        await self._send(self.packer.finish(), last=True)

    async def _send(self, message: bytes, *, last: bool) -> None:
        if self.seq == 0:
            kind = "phrase" if self.say.phrase is not None else "text"
            metrics.FIRST_FRAME.labels(kind).observe(max(0.0, time.time() - self.say.ts))
        headers = out_headers(
            self.say.utterance_id, self.seq, last, self.say.interruptible, self.claim.epoch
        )
        await self.bus.publish_audio(self.subject, message, headers)
        metrics.AUDIO_OUT_MESSAGES.inc()
        self.seq += 1


class CallSpeech:
    """Everything one owned call says, in order, until the call ends."""

    def __init__(self, worker: TtsWorker, claim: Claim) -> None:
        self.worker = worker
        self.bus = worker.bus
        self.claim = claim
        self.call_id = claim.call_id
        self.fence = Fence()
        self.errors = worker.bus.outbox(f"tts-{claim.call_id}")
        self.error_count = 0
        self.queue: asyncio.Queue[schemas.Say] = asyncio.Queue()
        self.flushed: set[str] = set()
        self.current: tuple[str, asyncio.Task[None]] | None = None
        self.spoken = 0  # utterances finished (for tests and logs)

    # --- following the call -------------------------------------------------------------------

    async def run(self, takeover: bool) -> None:
        speaker = asyncio.create_task(self._speak_in_order(), name=f"tts-{self.call_id}")
        try:
            await self._follow(takeover)
        finally:
            speaker.cancel()
            await asyncio.gather(speaker, return_exceptions=True)
            await self.errors.close(timeout_s=5.0)
        log.info("[%s] call ended, %d utterances spoken", self.call_id, self.spoken)

    async def _follow(self, takeover: bool) -> None:
        resume = await self._resume_point() if takeover else None
        backlog: list[schemas.Say] = []
        caught_up = False
        async for env in self.bus.replay(subjects.all_of(self.call_id)):
            match env.event:
                case schemas.Claimed(service=service, epoch=epoch):
                    self.fence.claimed(service, epoch)
                case schemas.Say() as say if not self.fence.allows("brain", say.epoch):
                    log.warning(
                        "[%s] ignored say %s of a stale brain", self.call_id, say.utterance_id
                    )
                case schemas.Say() as say:
                    if caught_up:
                        self.queue.put_nowait(say)
                    else:
                        backlog.append(say)
                case schemas.Flush(utterance_id=utterance_id):
                    backlog = self._flush(utterance_id, backlog)
                case schemas.Ended():
                    return
                case _:
                    pass
            if not caught_up and env.pending == 0:
                # Speak only once the stored history is read: a flush stored after a say must
                # cancel it before a single frame of it leaves.
                caught_up = True
                for say in _after_resume(backlog, resume):
                    self.queue.put_nowait(say)
                backlog = []

    async def _resume_point(self) -> tuple[str, bool] | None:
        """On takeover, the utterance of the call's last audio.out message and whether it was
        complete. Says are spoken strictly in order, so every say before it was spoken too."""
        try:
            msg = await self.bus.js.get_last_msg(streams.AUDIO, subjects.audio_out(self.call_id))
            out = parse_out(msg.headers, msg.data or b"")
        except NotFoundError:
            return None
        except BadAudio as e:
            log.warning(
                "[%s] takeover: bad last audio.out (%s), speaking every say", self.call_id, e
            )
            return None
        log.info(
            "[%s] takeover: last audio.out is utterance %s (%s)",
            self.call_id,
            out.utterance_id,
            "complete" if out.last else "partial, respoken",
        )
        return out.utterance_id, out.last

    def _flush(self, utterance_id: str | None, backlog: list[schemas.Say]) -> list[schemas.Say]:
        metrics.FLUSHED.inc()
        if utterance_id is None:
            while not self.queue.empty():
                self.flushed.add(self.queue.get_nowait().utterance_id)
            self.flushed.update(say.utterance_id for say in backlog)
            backlog = []
        else:
            self.flushed.add(utterance_id)
            backlog = [say for say in backlog if say.utterance_id != utterance_id]
        if self.current is not None and utterance_id in (None, self.current[0]):
            log.info("[%s] flush: utterance %s stopped", self.call_id, self.current[0])
            self.current[1].cancel()
        return backlog

    # --- speaking ----------------------------------------------------------------------------

    async def _speak_in_order(self) -> None:
        while True:
            say = await self.queue.get()
            if say.utterance_id in self.flushed:
                continue
            task = asyncio.create_task(self._utter(say), name=f"tts-{say.utterance_id}")
            self.current = (say.utterance_id, task)
            try:
                await asyncio.wait([task])  # a flush cancels `task`, not this loop
            finally:
                self.current = None
                if not task.done():  # this loop was cancelled: the call ended
                    task.cancel()
                    await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.error(
                    "[%s] utterance %s failed",
                    self.call_id,
                    say.utterance_id,
                    exc_info=task.exception(),
                )

    async def _utter(self, say: schemas.Say) -> None:
        outlet = _Outlet(self.worker, say, self.claim)
        if say.phrase is not None:
            metrics.SAYS.labels("phrase").inc()
            # Cached at the normal pace: a slower reading is synthesized.
            pcm = self.worker.phrases.get(say.phrase) if say.speed == 1.0 else None
            if pcm is not None:
                await outlet.push(pcm)
            elif say.phrase in PHRASES:
                if say.speed == 1.0:
                    log.warning("[%s] phrase %r not cached, synthesizing", self.call_id, say.phrase)
                await self._synthesize(PHRASES[say.phrase], outlet, say.speed)
            else:
                log.error("[%s] unknown phrase %r", self.call_id, say.phrase)
                self._report("unknown_phrase", f"unknown phrase {say.phrase!r}", retryable=False)
        elif say.text:
            metrics.SAYS.labels("text").inc()
            try:
                await self._synthesize(say.text, outlet, say.speed)
            except (PoolFailure, ProviderError) as e:
                # What was spoken stays; the edge must still learn that the utterance is over,
                # or it would wait for the rest of it before anything else plays.
                log.error("[%s] utterance %s cut short: %s", self.call_id, say.utterance_id, e)
                self._report("tts_failed", str(e), retryable=True)
        await outlet.finish()
        self.spoken += 1
        log.debug("[%s] utterance %s: %d messages", self.call_id, say.utterance_id, outlet.seq)

    async def _synthesize(self, text: str, outlet: _Outlet, speed: float = 1.0) -> None:
        stream: ResampleStream | None = None
        try:
            for sentence in sentences(normalise(text)):
                async with contextlib.aclosing(self._sentence(sentence, speed)) as audio:
                    async for rate, chunk in audio:
                        if stream is None or stream.in_rate != rate:
                            if stream is not None:
                                await outlet.push(await stream.finish())
                            stream = self.worker.pool.stream(rate)
                        try:
                            await outlet.push(await stream.feed(chunk))
                        except PoolFailure as e:
                            # Its process was replaced: go on in a fresh stream (the filter's
                            # history is lost, a click at worst, not a missing sentence).
                            log.warning("[%s] resampling: %s", self.call_id, e)
                            stream = self.worker.pool.stream(rate)
                            await outlet.push(await stream.feed(chunk))
            if stream is not None:
                tail, stream = stream, None
                await outlet.push(await tail.finish())
        finally:
            if stream is not None:
                stream.close()

    async def _sentence(
        self, sentence: str, speed: float = 1.0
    ) -> AsyncGenerator[tuple[int, bytes], None]:
        """One sentence's audio at its native rate: from the LRU, the primary voice, or (after
        a primary failure) the offline voice. A failed sentence of the offline voice is skipped."""
        worker = self.worker
        voices: tuple[NativeVoice, ...] = (worker.primary,)
        if worker.primary is not worker.offline:
            voices += (worker.offline,)
        for voice in voices:
            key = (sentence, *voice.identity, f"speed={speed:g}")
            cached = worker.sentence_cache.get(key)
            if cached is not None:
                yield voice.native_rate, cached
                return
            metrics.PROVIDER_REQUESTS.labels(voice.name).inc()
            got: list[bytes] = []
            try:
                async with contextlib.aclosing(voice.speak_native(sentence, speed)) as chunks:
                    async for chunk in chunks:
                        got.append(chunk)
                        yield voice.native_rate, chunk
            except ProviderError as e:
                code = "provider_timeout" if isinstance(e, ProviderTimeout) else "provider_error"
                metrics.PROVIDER_ERRORS.labels(voice.name, code).inc()
                if voice is worker.offline:
                    log.error("[%s] offline voice failed, sentence skipped: %s", self.call_id, e)
                    self._report(code, f"{voice.name}: {e}", retryable=e.retryable)
                    return
                metrics.FALLBACKS.inc()
                log.warning(
                    "[%s] %s failed (%s); offline voice for this sentence",
                    self.call_id,
                    voice.name,
                    e,
                )
                self._report(code, f"{voice.name}: {e}", retryable=e.retryable)
                continue
            worker.sentence_cache.put(key, b"".join(got))
            return

    def _report(self, code: str, message: str, *, retryable: bool) -> None:
        self.error_count += 1
        error = schemas.Error(
            call_id=self.call_id,
            ts=time.time(),
            epoch=self.claim.epoch,
            source="tts",
            code=code,
            message=message,
            retryable=retryable,
        )
        msg_id = f"{self.call_id}:error:tts:{self.claim.epoch}:{self.error_count}"
        self.errors.put(subjects.event(self.call_id, "error"), error, msg_id)


def _after_resume(backlog: list[schemas.Say], resume: tuple[str, bool] | None) -> list[schemas.Say]:
    """The says still to speak after a takeover: those after the last one published in full
    (a partly published one is spoken again from its start rather than cut)."""
    if resume is None:
        return backlog
    utterance_id, complete = resume
    ids = [say.utterance_id for say in backlog]
    if utterance_id not in ids:
        return backlog
    i = ids.index(utterance_id)
    return backlog[i + 1 :] if complete else backlog[i:]
