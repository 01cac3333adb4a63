"""One call's data for its page: events, audio, export file. Read from the JetStream streams
while they hold the call, from the archive (PostgreSQL rows, the MP3) once they do not.

Audio rendering runs in the console's process pool and is kept in a small cache (by call, and
by what it was rendered from: a call still in progress is rendered again once it has more)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg

from archiver import raw, timeline
from archiver.summary import Stored
from console import callview, metrics, render, store
from events import schemas, streams, subjects
from events.auth import Login
from events.bus import Bus

log = logging.getLogger("console.calls")

CACHE_BYTES: Final = 64 * 1024 * 1024
STREAM_READ_S: Final = 15.0
REBUILD_S: Final = 1.0  # a live call page gets a new model at most this often


class NotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Audio:
    """Where a call's audio comes from, and its waveforms."""

    source: str  # mp3 | stream
    rendered: render.Rendered
    mp3: Path | None = None


class _Cache:
    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self._items: OrderedDict[str, tuple[tuple[Any, ...], Audio, int]] = OrderedDict()

    def get(self, call_id: str, key: tuple[Any, ...]) -> Audio | None:
        item = self._items.get(call_id)
        if item is None or item[0] != key:
            return None
        self._items.move_to_end(call_id)
        return item[1]

    def put(self, call_id: str, key: tuple[Any, ...], audio: Audio) -> None:
        size = len(audio.rendered.wav or b"") + 16 * len(audio.rendered.peaks.get("caller", []))
        self._items[call_id] = (key, audio, size)
        self._items.move_to_end(call_id)
        while sum(s for _, _, s in self._items.values()) > self.limit and len(self._items) > 1:
            self._items.popitem(last=False)


class Calls:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool | None,
        executor: Executor,
        *,
        nats_url: str,
        login: Login,
        database_url: str | None,
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.executor = executor
        self.nats_url = nats_url
        self.login = login
        self.database_url = database_url
        self._cache = _Cache()
        # Gone with the last request holding it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # --- events and the page's model --------------------------------------------------------

    async def history(self, call_id: str) -> tuple[list[Stored], str]:
        """The call's events and where they came from (streams | archive)."""
        envs = await asyncio.wait_for(self.bus.history(subjects.all_of(call_id)), STREAM_READ_S)
        if envs:
            return [Stored(e.stream_seq, e.event) for e in envs], "streams"
        if self.pool is not None:
            stored = await store.call_events(self.pool, call_id)
            if stored:
                return stored, "archive"
        raise NotFound(call_id)

    async def model(self, call_id: str) -> dict[str, Any]:
        events, source = await self.history(call_id)
        return await self._model(call_id, events, source)

    async def _model(self, call_id: str, events: list[Stored], source: str) -> dict[str, Any]:
        model = callview.build(call_id, events, time.time())
        model["source"] = source
        row = await store.call_row(self.pool, call_id) if self.pool is not None else None
        model["archived"] = bool(row and row.get("mp3_path"))
        if row is not None:
            model["ticket"] = model["ticket"] or row.get("ticket")
            model["caller"] = model["caller"] or row.get("caller")
        return model

    async def follow(self, call_id: str) -> AsyncIterator[dict[str, Any]]:
        """The model of a call in progress, again each time it changed (at most every
        REBUILD_S), until it ends: one tail on the call's subjects, its history first."""
        events: list[Stored] = []
        dirty = ended = False
        last = 0.0
        async with self.bus.tail(streams.CALLS, [subjects.all_of(call_id)], name=call_id) as tail:
            while not ended:
                wait = max(0.0, last + REBUILD_S - time.monotonic()) if dirty else None
                try:
                    msg = await asyncio.wait_for(tail.get(), wait)
                except TimeoutError:
                    msg = None
                if msg is not None:
                    env = self.bus.decode(msg)
                    if env is None or isinstance(env.event, schemas.Interim):
                        continue
                    events.append(Stored(env.stream_seq, env.event))
                    dirty = True
                    ended = isinstance(env.event, schemas.Ended)
                    if env.pending and not ended:
                        continue  # still reading the history: one model at the end of it
                if dirty and (ended or time.monotonic() - last >= REBUILD_S):
                    yield await self._model(call_id, events, "streams")
                    dirty, last = False, time.monotonic()

    # --- audio ------------------------------------------------------------------------------

    async def audio(self, call_id: str) -> Audio:
        """The call's audio: the archived MP3 when there is one, else the stream's."""
        lock = self._locks.get(call_id)
        if lock is None:
            lock = self._locks[call_id] = asyncio.Lock()
        async with lock:  # the page asks for waveform and audio at once: render once
            return await self._audio(call_id)

    async def _audio(self, call_id: str) -> Audio:
        loop = asyncio.get_running_loop()
        row = await store.call_row(self.pool, call_id) if self.pool is not None else None
        path = Path(row["mp3_path"]) if row is not None and row.get("mp3_path") else None
        if path is not None and await asyncio.to_thread(path.is_file):
            assert row is not None
            key: tuple[Any, ...] = ("mp3", row.get("mp3_sha256"), str(path))
            if (hit := self._cache.get(call_id, key)) is not None:
                return hit
            started = time.monotonic()
            rendered = await loop.run_in_executor(self.executor, render.render_mp3, path)
            metrics.RENDERS.labels("mp3").inc()
            metrics.RENDER_SECONDS.observe(time.monotonic() - started)
            audio = Audio("mp3", rendered, path)
            self._cache.put(call_id, key, audio)
            return audio
        count = await raw.count(self.bus.js, streams.AUDIO, call_id)
        if count == 0:
            raise NotFound(f"no audio of call {call_id} in the AUDIO stream or the archive")
        events, _ = await self.history(call_id)
        model = callview.build(call_id, events, time.time())
        key = ("stream", count, model["duration_s"] if not model["live"] else None)
        if (hit := self._cache.get(call_id, key)) is not None:
            return hit
        started = time.monotonic()
        caller, bot, bad = await asyncio.wait_for(
            raw.read_audio(self.bus, call_id), STREAM_READ_S * 2
        )
        call = timeline.CallAudio(
            call_id,
            model["started_ts"],
            model["duration_s"],
            caller,
            bot,
            timeline.played(s.event for s in events),
        )
        rendered = await loop.run_in_executor(self.executor, render.render_stream, call)
        if bad:
            rendered = render.Rendered(
                rendered.peaks, rendered.wav, (*rendered.notes, f"{bad} unreadable message(s)")
            )
        metrics.RENDERS.labels("stream").inc()
        metrics.RENDER_SECONDS.observe(time.monotonic() - started)
        audio = Audio("stream", rendered)
        self._cache.put(call_id, key, audio)
        return audio

    # --- the export file ----------------------------------------------------------------------

    async def export(self, call_id: str, folder: Path) -> Path:
        """The file `voicebot export` writes (and `voicebot replay` takes), into `folder`."""
        from voicebot.export import ExportError, export_call

        try:
            return await export_call(
                self.nats_url,
                call_id,
                folder / f"{call_id}.jsonl.gz",
                database_url=self.database_url,
                login=self.login,
            )
        except ExportError as e:
            raise NotFound(str(e)) from e
