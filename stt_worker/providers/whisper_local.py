"""Offline STT: multilingual Whisper base (CTranslate2, int8) on turns cut by Silero VAD.

Whisper does not stream, so the provider segments the call's audio itself (Silero VAD and the
turn-taking of `stt_worker.turn`), yields `speech_started` at each onset, then one `final` and
an `utterance_end` per caller turn. What the bot asked (`SttContext.expecting`) steers
recognition of closed answers (`recognise`) and when a turn ends (`answers.turn_complete`).
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
import functools
import logging
import math
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from events import schemas
from events.runtime import exit_with_parent
from stt_worker import answers
from stt_worker.providers.base import Heard, ProviderError, ProviderTimeout, SttContext
from stt_worker.silero import SileroVad
from stt_worker.turn import (
    Commit,
    Discard,
    Onset,
    Speculate,
    TurnConfig,
    TurnEvent,
    TurnTaker,
)

log = logging.getLogger("stt_worker.whisper")

WINDOW_S: Final = 10  # encoder window for utterances that fit; longer ones get Whisper's 30 s
LONG_WINDOW_S: Final = 30
MODEL_RATE: Final = 16_000
MAX_TOKENS: Final = 96  # a 12 s utterance of French speech stays well below


@dataclass(frozen=True, slots=True)
class Recognised:
    text: str  # what the provider reports: the free decoding, or the expected answer it chose
    avg_logprob: float
    no_speech_prob: float
    seconds: float  # inference time in the worker process
    free_text: str = ""  # the free decoding, kept when an expected answer replaced it
    # `text` is one of the expected answers, scored against the audio, or a number decoded
    # again from its "0"
    snapped: bool = False


# An expected answer replaces the free decoding when its mean log-probability per token is no
# worse than the free decoding's by more than the margin (both scored the same way, see
# `_score`), and when the answers it stands for beat the other answers by `SNAP_CLEAR`.
# Measured on tests/fixtures/stt/answers (bench/stt_answers.py): a misheard "internet" trails
# its free decoding by 0.4-1.4, unrelated speech by 1.6-3.9. Yes/no gets a tight margin: free
# decoding rarely misses "oui"/"non", and a wrong snap would flip the caller's answer.
SNAP_MARGIN: Final = {"yes_no": 0.0, "category": 1.5}
SNAP_CLEAR: Final = 0.25
# A caller's number gets a second decoding when the free one did not hear ten digits: its
# text is forced to begin with "0" (every French number does), after the name for
# "identity", and the best of its hypotheses that holds a whole number replaces the free
# decoding. Measured in bench/stt_numbers.py: the free decoding, or a digits-only one,
# turns a misheard "zéro six" into "1, 2, 3, 4..."; starting from the "0" keeps the decoder
# on the number. Under the domain prompt it makes up fewer wrong numbers than under one
# without its example number (`answers.is_phone_number` refuses that example repeated).
NUMBER_HYPOTHESES: Final = 5  # the beam's width: the other hypotheses come at no cost
# Scoring force-decodes every phrasing at once, one batch row each, and the decoder computes its
# cross-attention over the encoder's output once per row: over the whole 10 s window, 12
# phrasings took 300-460 ms on one thread, the slowest step of a closed answer's turn. Only the
# audio and SCORE_CONTEXT_S of the silence after it are scored: scoring 2.4x faster on the
# recorded answers, a closed answer recognised in p50 409 ms instead of 504 (bench/stt_closed.py,
# as many right). The end-of-text needs that silence: with 1 s, "Non." scored -2.9, not -0.4.
# The free decoding keeps the whole window: it is one row, cheap.
SCORE_CONTEXT_S: Final = 2.0
ENCODER_RATE: Final = 50  # encoder frames per second of audio


# --- worker-process side: globals set once by the pool initializer ----------------------

_engine: dict[str, Any] = {}


def _init_process(model_dir: str, threads: int, parent_pid: int) -> None:
    exit_with_parent(parent_pid)
    import ctranslate2
    import tokenizers
    from faster_whisper.feature_extractor import FeatureExtractor
    from faster_whisper.tokenizer import Tokenizer

    model = ctranslate2.models.Whisper(
        model_dir, device="cpu", compute_type="int8", intra_threads=threads, inter_threads=1
    )
    hf = tokenizers.Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok = Tokenizer(hf, True, task="transcribe", language="fr")
    _engine["model"] = model
    _engine["tokenizer"] = tok
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


def _prompt_tokens(prompt: str) -> list[int]:
    tok = _engine["tokenizer"]
    tokens = [tok.sot_prev, *tok.encode(" " + prompt.strip())] if prompt.strip() else []
    return [*tokens, *tok.sot_sequence, tok.no_timestamps]


def _decode(encoded: Any, start: list[int], **options: Any) -> tuple[str, float, float]:
    tok = _engine["tokenizer"]
    result = _engine["model"].generate(
        encoded,
        [start],
        beam_size=5,
        no_repeat_ngram_size=3,
        max_length=MAX_TOKENS,
        return_scores=True,
        return_no_speech_prob=True,
        **options,
    )[0]
    # scores: length-normalised log-probability
    text = tok.decode(result.sequences_ids[0]).strip()
    return text, float(result.scores[0]), float(result.no_speech_prob)


def _log_softmax(logits: Any) -> np.ndarray:
    x: np.ndarray = np.asarray(logits, dtype=np.float64).reshape(-1)
    top = x.max()
    out: np.ndarray = x - (top + np.log(np.exp(x - top).sum()))
    return out


def _head(encoded: Any, seconds: float) -> Any:
    """The encoder's output for the first `seconds` of its window."""
    import ctranslate2

    frames = np.asarray(encoded)
    keep = min(frames.shape[1], math.ceil(seconds * ENCODER_RATE))
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(frames[:, :keep]))


def _score(encoded: Any, texts: list[str]) -> list[float]:
    """Mean log-probability per token of each text *as the whole utterance* (its end-of-text
    token included, so a short answer does not fit a long utterance), force-decoded against
    the audio. No prompt: the free decoding's prompt would favour its own words."""
    import ctranslate2

    tok = _engine["tokenizer"]
    start = [*tok.sot_sequence, tok.no_timestamps]
    ids = [tok.encode(" " + t.strip()) for t in texts]
    batch = np.repeat(np.asarray(encoded), len(ids), axis=0)
    # The prefix is forced; generation must go one step past it for the end-of-text
    # probability (CTranslate2 counts max_length over prefix steps twice, measured).
    longest = max(len(i) for i in ids)
    results = _engine["model"].generate(
        ctranslate2.StorageView.from_array(batch),
        [start + i for i in ids],
        beam_size=1,
        max_length=2 * (longest + 1) + 2,
        return_logits_vocab=True,
        suppress_blank=False,
    )
    scores = []
    for tokens, result in zip(ids, results, strict=True):
        steps = result.logits[0] if result.logits else []
        if len(steps) <= len(tokens):
            scores.append(-math.inf)
            continue
        logps = [_log_softmax(steps[k])[t] for k, t in enumerate(tokens)]
        logps.append(_log_softmax(steps[len(tokens)])[tok.eot])
        scores.append(float(np.mean(logps)))
    return scores


def _expected(encoded: Any, free: str, expecting: str) -> tuple[str, float] | None:
    """The expected answer that fits the audio about as well as the free decoding, if any."""
    choices = answers.CHOICES[expecting]
    heard = answers.meanings(free)
    # Every answer of the question at once ("A internet, mobile." for "Internet, le wifi."):
    # the prompt's own "box internet, mobile" echoed, no answer; the audio decides.
    both = set(choices) <= heard
    if (heard and not both) or answers.is_filler(free):
        # The free decoding already heard a known answer (maybe to another question), or a
        # "hum" that no answer should replace.
        return None
    phrasings = [(meaning, p) for meaning, ps in choices.items() for p in ps]
    *candidates, free_score = _score(encoded, [p for _, p in phrasings] + [free or "."])
    best = max(range(len(phrasings)), key=lambda i: candidates[i])
    meaning, text = phrasings[best]
    runner_up = max(
        (c for (m, _), c in zip(phrasings, candidates, strict=True) if m != meaning),
        default=-math.inf,
    )
    if candidates[best] < free_score - SNAP_MARGIN[expecting]:
        return None  # something else was said
    if candidates[best] - runner_up < SNAP_CLEAR:
        return None  # the audio does not tell the answers apart
    return text, candidates[best]


def _number(encoded: Any, prompt: str, prefix: str) -> tuple[str, float] | None:
    """The caller's number decoded again from "0" (after `prefix`), if a hypothesis of that
    decoding holds a whole one."""
    tok = _engine["tokenizer"]
    forced = tok.encode(" " + f"{prefix} 0".strip())
    result = _engine["model"].generate(
        encoded,
        [_prompt_tokens(prompt) + forced],
        beam_size=NUMBER_HYPOTHESES,
        num_hypotheses=NUMBER_HYPOTHESES,
        no_repeat_ngram_size=3,
        max_length=MAX_TOKENS,
        return_scores=True,
    )[0]
    # The forced tokens come back at the head of each hypothesis; best first.
    for ids, score in zip(result.sequences_ids, result.scores, strict=True):
        text = tok.decode(ids).strip()
        if answers.is_phone_number(text, prompt):
            return text, float(score)
    return None


def recognise(pcm: bytes, prompt: str, expecting: str | None = None) -> Recognised:
    """Transcribe one utterance (8 kHz s16le, at most LONG_WINDOW_S long) in French.

    With `expecting` a closed question ("yes_no", "category"), a free decoding that heard
    none of the known answers is compared with the expected answers, scored against the audio;
    with "phone" or "identity", a free decoding without a whole number is decoded again from
    the number's "0" (`_number`)."""
    import time

    import ctranslate2

    began = time.perf_counter()
    model = _engine["model"]
    audio = upsample(pcm)[: LONG_WINDOW_S * MODEL_RATE]
    window = WINDOW_S if audio.size <= WINDOW_S * MODEL_RATE else LONG_WINDOW_S
    # Zero-pad the audio (not the features) to the window: the log-mel of silence is what
    # Whisper saw in training after every utterance.
    mel = _engine["features"](audio, padding=window * MODEL_RATE - audio.size)
    mel = np.ascontiguousarray(mel[None, :, : window * 100], dtype=np.float32)
    features = ctranslate2.StorageView.from_array(mel)
    closed = expecting in answers.CHOICES or expecting in ("phone", "identity")
    # The encoder runs once; decodings and scoring reuse its output.
    encoded = model.encode(features, to_cpu=True) if closed else features
    start = _prompt_tokens(prompt)
    text, score, no_speech = _decode(encoded, start)
    if answers.is_counting(text):
        # "1, 2, 3, 4, 5…" for a hesitant or noisy "euh… oui, oui" (`make quality`): the
        # prompt's example number pulling the decoder, not the caller. Again without it.
        text, score, no_speech = _decode(encoded, _prompt_tokens(""))
    free, snapped = text, False
    if expecting in answers.CHOICES:
        heard = _head(encoded, audio.size / MODEL_RATE + SCORE_CONTEXT_S)
        if (choice := _expected(heard, text, expecting)) is not None:
            (text, score), snapped = choice, True
    elif (prefix := answers.number_prefix(text, expecting, prompt)) is not None and (
        number := _number(encoded, prompt, prefix)
    ):
        (text, score), snapped = number, True
    return Recognised(
        text=text,
        avg_logprob=score,
        no_speech_prob=no_speech,
        seconds=time.perf_counter() - began,
        free_text=free,
        snapped=snapped,
    )


def _ping() -> int:
    return len(_engine)


# --- event-loop side -------------------------------------------------------------------


class WhisperPool:
    """A pool of Whisper processes, each loading the model once; rebuilt if a process dies or
    hangs (no recognition finished for HUNG_AFTER_S while some were waiting: a recognition
    takes well under a second, so that is not a queue, it is a stuck process)."""

    HUNG_AFTER_S: Final = 10.0

    def __init__(self, model_dir: Path, *, workers: int, threads: int) -> None:
        self.model_dir = model_dir
        self.workers = workers
        self.threads = threads
        self._executor: ProcessPoolExecutor | None = None
        self._last_done = time.monotonic()
        self.replaced = 0

    def _make(self) -> ProcessPoolExecutor:
        # spawn: a forked child would inherit the event loop's threads and sockets.
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_process,
            initargs=(str(self.model_dir), self.threads, os.getpid()),
        )

    async def start(self) -> None:
        """Start every process and wait until each has loaded and warmed the model."""
        self._executor = self._make()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, _ping) for _ in range(self.workers))
        )

    async def recognise(
        self, pcm: bytes, prompt: str, *, limit_s: float, expecting: str | None = None
    ) -> Recognised:
        executor = self._executor
        if executor is None:
            raise ProviderError("whisper pool is not started")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, recognise, pcm, prompt, expecting)
            result = await asyncio.wait_for(future, limit_s)
        except TimeoutError as e:
            if time.monotonic() - self._last_done > self.HUNG_AFTER_S:
                self._replace(executor, "no recognition finished for a while: a process hangs")
            raise ProviderTimeout(f"whisper took more than {limit_s:.1f} s") from e
        except BrokenProcessPool as e:
            self._replace(executor, "a whisper process died")
            raise ProviderError("whisper process died") from e
        self._last_done = time.monotonic()
        return result

    def _replace(self, executor: ProcessPoolExecutor, why: str) -> None:
        if self._executor is not executor:
            return  # another call already replaced it
        log.error("%s; starting a new pool", why)
        processes = list((getattr(executor, "_processes", None) or {}).values())
        self._executor = self._make()
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.kill()
        self._last_done = time.monotonic()
        self.replaced += 1

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
    """The offline provider: Silero VAD and turn-taking on the event loop (cheap, measured in
    bench/stt_turns.py), recognition in the pool. See stt_worker/turn.py for when a turn ends."""

    name = "whisper"
    snapped_name = schemas.EXPECTED_ANSWER  # a Final whose text is an expected answer

    def __init__(
        self,
        pool: WhisperPool,
        *,
        turn: TurnConfig,
        prompt: str,
        timeout_s: float,
        detector: Callable[[], SileroVad] = SileroVad,
    ) -> None:
        self.pool = pool
        self.turn = turn
        self.prompt = prompt
        self.timeout_s = timeout_s
        self.detector = detector

    async def stream(
        self,
        audio: AsyncIterator[bytes],
        *,
        call_id: str = "-",
        context: SttContext | None = None,
    ) -> AsyncIterator[Heard]:
        # Results leave in audio order, but audio keeps being read (and segmented) while an
        # utterance is recognised: a reader task queues Heard items and committed
        # recognitions.
        context = context or SttContext()
        out: asyncio.Queue[Heard | asyncio.Task[list[Heard]] | None] = asyncio.Queue()
        call = _CallTurns(self, context, out)
        reader = asyncio.create_task(call.read(audio), name=f"whisper-vad-{call_id}")
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
            pending = list(call.speculations.values())
            while not out.empty():
                left = out.get_nowait()
                if isinstance(left, asyncio.Task):
                    pending.append(left)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class _CallTurns:
    """One call's turn-taking: the pure TurnTaker driven by audio and recognition results."""

    def __init__(
        self,
        provider: WhisperLocalStt,
        context: SttContext,
        out: asyncio.Queue[Heard | asyncio.Task[list[Heard]] | None],
    ) -> None:
        self.provider = provider
        self.context = context
        self.out = out
        vad = provider.detector()
        self.turns = TurnTaker(vad.probability, vad.window, provider.turn)
        self.speculations: dict[int, asyncio.Task[list[Heard]]] = {}

    async def read(self, audio: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in audio:
                self._handle(self.turns.feed(chunk))
            self._handle(self.turns.flush())
        finally:
            self.out.put_nowait(None)

    def _handle(self, events: list[TurnEvent]) -> None:
        for event in events:
            match event:
                case Onset(at=at):
                    self.out.put_nowait(Heard("speech_started", start=at, end=at))
                case Speculate():
                    task = asyncio.create_task(self._recognise(event))
                    task.add_done_callback(functools.partial(self._recognised, event.id))
                    self.speculations[event.id] = task
                case Discard(id=spec_id):
                    if spec_id in self.speculations:
                        self.speculations.pop(spec_id).cancel()
                case Commit(id=spec_id):
                    self.out.put_nowait(self.speculations.pop(spec_id))

    def _recognised(self, spec_id: int, task: asyncio.Task[list[Heard]]) -> None:
        """A speculation finished: its text may end the turn before `end_ms` of silence."""
        if spec_id not in self.speculations or task.cancelled() or task.exception() is not None:
            return  # discarded, or failed: `end_ms` commits it and the error surfaces then
        final = task.result()[0]
        complete = answers.turn_complete(final.text, self.context.expecting)
        self._handle(self.turns.heard(spec_id, complete))

    async def _recognise(self, spec: Speculate) -> list[Heard]:
        provider = self.provider
        rec = await provider.pool.recognise(
            spec.pcm,
            provider.prompt,
            limit_s=provider.timeout_s,
            expecting=self.context.expecting,
        )
        final = Heard(
            "final",
            text=rec.text,
            confidence=float(np.exp(rec.avg_logprob)),
            start=spec.start,
            end=spec.end,
            speech_final=True,
            no_speech_prob=rec.no_speech_prob,
            avg_logprob=rec.avg_logprob,
            provider=provider.snapped_name if rec.snapped else None,
        )
        return [final, Heard("utterance_end", start=spec.end, end=spec.end)]
