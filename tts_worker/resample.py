"""Resampling provider audio to 8 kHz s16 mono with PyAV.

`av.AudioResampler` keeps filter state between calls, so an utterance resampled chunk by chunk is
continuous (no click at chunk edges) only if every chunk goes through the same resampler object:
a `ResampleStream` holds one per utterance. Streams are resampled on the event loop: a 100 ms
chunk at 24 kHz costs about 26 µs, where shipping it to a pool process and back cost 0.43 ms on
an idle machine, and much more on a busy one (three threads and a process to schedule per
chunk), which starved the edge of a synthesised answer's next frames at 100 calls.

The pool is a set of single-process executors (one per CPU) for the work that is heavy or
not thread-safe: libespeak (global state) synthesising whole sentences. Each executor runs its
tasks in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final, TypeVar

import av
import numpy as np

from events.audio import SAMPLE_RATE
from events.runtime import exit_with_parent

log = logging.getLogger("tts_worker.resample")

T = TypeVar("T")

# A sentence of espeak takes milliseconds, a resampled chunk less: a job this slow is stuck.
JOB_TIMEOUT_S: Final = 3.0


class PoolFailure(RuntimeError):
    """A pool process died or hung; it has been replaced, the job may be tried again."""


# --- what runs inside a pool process ----------------------------------------------------------


def new_resampler() -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)


def resample_chunk(resampler: av.AudioResampler, pcm: bytes, in_rate: int) -> bytes:
    """Feed whole s16le samples at `in_rate`; returns the 8 kHz samples ready so far."""
    if not pcm:
        return b""
    samples = np.frombuffer(pcm, dtype=np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = in_rate
    return b"".join(out.to_ndarray().tobytes() for out in resampler.resample(frame))


def drain(resampler: av.AudioResampler) -> bytes:
    """The samples the filter still holds at the end of a stream."""
    return b"".join(out.to_ndarray().tobytes() for out in resampler.resample(None))


def resample_all(pcm: bytes, in_rate: int) -> bytes:
    """A whole signal at once (phrase cache, tests)."""
    resampler = new_resampler()
    return resample_chunk(resampler, pcm, in_rate) + drain(resampler)


def _ready() -> int:
    return os.getpid()


# --- the event-loop side ----------------------------------------------------------------------


class AudioPool:
    """Single-process executors, one per CPU by default; work is pinned to one by index."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        # spawn, not fork: the parent runs an event loop and NATS/HTTP client threads.
        self._context = multiprocessing.get_context("spawn")
        self._shards = [self._new_shard() for _ in range(self.workers)]
        self._next = itertools.cycle(range(self.workers))

    def _new_shard(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._context,
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        )

    async def start(self) -> None:
        """Start every process now so the first utterance does not pay for it."""
        pids = await asyncio.gather(*(self.run(i, _ready) for i in range(self.workers)))
        log.info("audio pool ready: %d processes %s", self.workers, pids)

    def pick(self) -> int:
        return next(self._next)

    async def run(self, shard: int, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the shard's process. A process that died or hangs past
        JOB_TIMEOUT_S is killed and replaced, and the job fails with PoolFailure."""
        loop = asyncio.get_running_loop()
        executor = self._shards[shard]
        try:
            return await asyncio.wait_for(loop.run_in_executor(executor, fn, *args), JOB_TIMEOUT_S)
        except TimeoutError as e:
            self._replace(shard, executor, f"a job took more than {JOB_TIMEOUT_S:.0f} s")
            raise PoolFailure(f"audio pool process {shard} hung") from e
        except BrokenProcessPool as e:
            self._replace(shard, executor, "its process died")
            raise PoolFailure(f"audio pool process {shard} died") from e

    def _replace(self, shard: int, executor: ProcessPoolExecutor, why: str) -> None:
        if shard >= len(self._shards) or self._shards[shard] is not executor:
            return  # another job already replaced it
        log.error("audio pool process %d replaced: %s", shard, why)
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)
        self._shards[shard] = fresh = self._new_shard()
        fresh.submit(_ready)  # start its process now, not under the next sentence

    def pids(self) -> list[int]:
        """Process ids of the pool (fault tests kill them)."""
        return [pid for ex in self._shards for pid in (getattr(ex, "_processes", None) or {})]

    def submit(self, shard: int, fn: Callable[..., Any], *args: Any) -> None:
        """Queue work whose result nobody waits for (state clean-up); the executor holds it."""
        self._shards[shard].submit(fn, *args)

    def stream(self, in_rate: int) -> ResampleStream:
        """A stream resampled on the loop (see the module's docstring): no process involved."""
        return ResampleStream(in_rate)

    async def close(self) -> None:
        await asyncio.to_thread(self.shutdown)

    def shutdown(self) -> None:
        """Stop the processes (blocking: from outside an event loop, or through `close`)."""
        shards, self._shards = self._shards, []
        for ex in shards:
            ex.shutdown(wait=True, cancel_futures=True)


class ResampleStream:
    """One continuous signal at `in_rate` resampled to 8 kHz, chunk by chunk.

    Chunks may hold an odd number of bytes; the odd byte waits for the next chunk. `feed` and
    `finish` are coroutines for the callers' sake (a stream used to live in a pool process).
    """

    def __init__(self, in_rate: int) -> None:
        self.in_rate = in_rate
        self._odd = b""
        self._resampler: av.AudioResampler | None = None

    async def feed(self, pcm: bytes) -> bytes:
        data = self._odd + pcm
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        if not cut:
            return b""
        if self._resampler is None:
            self._resampler = new_resampler()
        return resample_chunk(self._resampler, data[:cut], self.in_rate)

    async def finish(self) -> bytes:
        """The rest of the signal; the stream's state is freed."""
        resampler, self._resampler = self._resampler, None
        return drain(resampler) if resampler is not None else b""

    def close(self) -> None:
        """Free the state of a stream that will not be finished (cancelled, failed)."""
        self._resampler = None
