"""Offline STT: multilingual Whisper base (CTranslate2, int8) on utterances cut by an energy VAD.

Whisper does not stream, so the provider segments the call's audio itself (`stt_worker.vad`),
yields `speech_started` at each onset, then one `final` and an `utterance_end` per utterance.
Recognition runs in worker processes (the model is loaded once per process by the pool's
initializer) so the event loop never blocks.

How it is run, measured on this machine (issue #5): CTranslate2 directly rather than
faster-whisper's `transcribe` (6x slower, with temperature-fallback loops); a 10 s encoder
window instead of 30 s (4-5x faster, same words on hotline phrases: the audio is zero-padded to
10 s *before* the log-mel, as Whisper pads to 30 s); beam 5; `no_repeat_ngram_size=3`; a short
domain prompt; int8 with one pinned thread per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from stt_worker.providers.base import Heard, ProviderError, ProviderTimeout
from stt_worker.vad import Onset, Segmenter, Utterance, VadConfig

log = logging.getLogger("stt_worker.whisper")

WINDOW_S: Final = 10  # encoder window for utterances that fit; longer ones get Whisper's 30 s
LONG_WINDOW_S: Final = 30
MODEL_RATE: Final = 16_000
MAX_TOKENS: Final = 96  # a 12 s utterance of French speech stays well below


@dataclass(frozen=True, slots=True)
class Recognised:
    text: str
    avg_logprob: float
    no_speech_prob: float
    seconds: float  # inference time in the worker process


# --- worker-process side: globals set once by the pool initializer ----------------------

_engine: dict[str, Any] = {}


def _init_process(model_dir: str, threads: int) -> None:
    import ctranslate2
    import tokenizers
    from faster_whisper.feature_extractor import FeatureExtractor
    from faster_whisper.tokenizer import Tokenizer

    model = ctranslate2.models.Whisper(
        model_dir, device="cpu", compute_type="int8", intra_threads=threads, inter_threads=1
    )
    hf = tokenizers.Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    _engine["model"] = model
    _engine["tokenizer"] = Tokenizer(hf, True, task="transcribe", language="fr")
    _engine["features"] = FeatureExtractor(feature_size=model.n_mels)
    recognise(bytes(8000), "")  # first run allocates: do it before a caller waits on it


def upsample(pcm: bytes) -> np.ndarray:
    """8 kHz s16le to 16 kHz float32 in [-1, 1], through PyAV's (libswresample) filter."""
    import av

    samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = 8000
    resampler = av.AudioResampler(format="s16", layout="mono", rate=MODEL_RATE)
    parts = [f.to_ndarray() for f in resampler.resample(frame)]
    parts += [f.to_ndarray() for f in resampler.resample(None)]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts, axis=1).reshape(-1).astype(np.float32) / 32768.0


def recognise(pcm: bytes, prompt: str) -> Recognised:
    """Transcribe one utterance (8 kHz s16le, at most LONG_WINDOW_S long) in French."""
    import time

    import ctranslate2

    began = time.perf_counter()
    model = _engine["model"]
    tok = _engine["tokenizer"]
    audio = upsample(pcm)[: LONG_WINDOW_S * MODEL_RATE]
    window = WINDOW_S if audio.size <= WINDOW_S * MODEL_RATE else LONG_WINDOW_S
    # Zero-pad the audio (not the features) to the window: the log-mel of silence is what
    # Whisper saw in training after every utterance.
    mel = _engine["features"](audio, padding=window * MODEL_RATE - audio.size)
    mel = np.ascontiguousarray(mel[None, :, : window * 100], dtype=np.float32)
    tokens = [tok.sot_prev, *tok.encode(" " + prompt.strip())] if prompt.strip() else []
    tokens += [*tok.sot_sequence, tok.no_timestamps]
    result = model.generate(
        ctranslate2.StorageView.from_array(mel),
        [tokens],
        beam_size=5,
        no_repeat_ngram_size=3,
        max_length=MAX_TOKENS,
        return_scores=True,
        return_no_speech_prob=True,
    )[0]
    text = tok.decode(result.sequences_ids[0]).strip()
    return Recognised(
        text=text,
        avg_logprob=float(result.scores[0]),  # length-normalised log-probability
        no_speech_prob=float(result.no_speech_prob),
        seconds=time.perf_counter() - began,
    )


def _ping() -> int:
    return len(_engine)


# --- event-loop side -------------------------------------------------------------------


class WhisperPool:
    """A pool of Whisper processes, each loading the model once; rebuilt if a process dies."""

    def __init__(self, model_dir: Path, *, workers: int, threads: int) -> None:
        self.model_dir = model_dir
        self.workers = workers
        self.threads = threads
        self._executor: ProcessPoolExecutor | None = None

    def _make(self) -> ProcessPoolExecutor:
        # spawn: a forked child would inherit the event loop's threads and sockets.
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_process,
            initargs=(str(self.model_dir), self.threads),
        )

    async def start(self) -> None:
        """Start every process and wait until each has loaded and warmed the model."""
        self._executor = self._make()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, _ping) for _ in range(self.workers))
        )

    async def recognise(self, pcm: bytes, prompt: str, *, limit_s: float) -> Recognised:
        executor = self._executor
        if executor is None:
            raise ProviderError("whisper pool is not started")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, recognise, pcm, prompt)
            return await asyncio.wait_for(future, limit_s)
        except TimeoutError as e:
            raise ProviderTimeout(f"whisper took more than {limit_s:.1f} s") from e
        except BrokenProcessPool as e:
            if self._executor is executor:  # the first call to see it replaces the pool
                log.error("a whisper process died; starting a new pool")
                self._executor = self._make()
                executor.shutdown(wait=False, cancel_futures=True)
            raise ProviderError("whisper process died") from e

    def pids(self) -> list[int]:
        """Process ids of the inference processes (for memory figures and fault tests)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sorted(processes)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel queued recognitions, let the running ones finish within `timeout_s`, then
        kill what is left: a backlog of utterances must not hold a shutdown."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = dict(getattr(executor, "_processes", None) or {})
        try:
            await asyncio.wait_for(
                asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True), timeout_s
            )
        except TimeoutError:
            log.warning("whisper pool still busy after %.0f s: killing it", timeout_s)
            for process in processes.values():
                process.kill()


class WhisperLocalStt:
    """The offline provider: VAD on the event loop (cheap), recognition in the pool."""

    name = "whisper"

    def __init__(self, pool: WhisperPool, *, vad: VadConfig, prompt: str, timeout_s: float) -> None:
        self.pool = pool
        self.vad = vad
        self.prompt = prompt
        self.timeout_s = timeout_s

    async def stream(
        self, audio: AsyncIterator[bytes], *, call_id: str = "-"
    ) -> AsyncIterator[Heard]:
        # Results leave in audio order, but audio keeps being read (and segmented) while an
        # utterance is recognised: a reader task queues Heard items and pending recognitions.
        out: asyncio.Queue[Heard | asyncio.Task[list[Heard]] | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(audio, out), name=f"whisper-vad-{call_id}")
        pending: list[asyncio.Task[list[Heard]]] = []
        try:
            while (item := await out.get()) is not None:
                if isinstance(item, Heard):
                    yield item
                    continue
                for heard in await item:
                    yield heard
            await reader  # re-raises a failure of the audio source
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            while not out.empty():
                left = out.get_nowait()
                if isinstance(left, asyncio.Task):
                    pending.append(left)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _read(
        self,
        audio: AsyncIterator[bytes],
        out: asyncio.Queue[Heard | asyncio.Task[list[Heard]] | None],
    ) -> None:
        segmenter = Segmenter(self.vad)
        try:
            async for chunk in audio:
                for segment in segmenter.feed(chunk):
                    self._emit(segment, out)
            for segment in segmenter.flush():
                self._emit(segment, out)
        finally:
            out.put_nowait(None)

    def _emit(
        self,
        segment: Onset | Utterance,
        out: asyncio.Queue[Heard | asyncio.Task[list[Heard]] | None],
    ) -> None:
        if isinstance(segment, Onset):
            out.put_nowait(Heard("speech_started", start=segment.at, end=segment.at))
        else:
            out.put_nowait(asyncio.create_task(self._finish(segment)))

    async def _finish(self, utterance: Utterance) -> list[Heard]:
        rec = await self.pool.recognise(utterance.pcm, self.prompt, limit_s=self.timeout_s)
        final = Heard(
            "final",
            text=rec.text,
            confidence=float(np.exp(rec.avg_logprob)),
            start=utterance.start,
            end=utterance.end,
            speech_final=True,
            no_speech_prob=rec.no_speech_prob,
            avg_logprob=rec.avg_logprob,
        )
        return [final, Heard("utterance_end", start=utterance.end, end=utterance.end)]
