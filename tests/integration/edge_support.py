"""Shared pieces of the edge's integration tests: a running edge, an event recorder."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from prometheus_client import REGISTRY

from edge.config import EdgeConfig
from edge.server import EdgeServer
from events import codec, subjects
from events.bus import Bus


def edge_config(tmp_path: Path, **overrides: Any) -> EdgeConfig:
    base = EdgeConfig.from_env({})
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "cache_dir": tmp_path,
        "edge_id": "edge-test",
    }
    fields.update(overrides)
    return dataclasses.replace(base, **fields)


@asynccontextmanager
async def running_edge(bus: Bus, cfg: EdgeConfig) -> AsyncIterator[EdgeServer]:
    server = EdgeServer(cfg, bus)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0.5)


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class Recorder:
    """Every message on `call.<id>.>` as it arrives, decoded where it has a schema."""

    def __init__(self) -> None:
        self.msgs: list[Msg] = []
        self._changed = asyncio.Event()
        self._sub: Any = None

    @classmethod
    async def start(cls, bus: Bus, call_id: str) -> Recorder:
        rec = cls()
        rec._sub = await bus.nc.subscribe(subjects.all_of(call_id), cb=rec._on_msg)
        await bus.nc.flush(timeout=2)
        return rec

    async def _on_msg(self, msg: Msg) -> None:
        self.msgs.append(msg)
        self._changed.set()

    def events(self, kind: str, tag: str | None = None) -> list[Any]:
        """Decoded messages of a subject kind ('event', 'playback'...), optionally one tag."""
        out = []
        for m in self.msgs:
            parsed = subjects.parse(m.subject)
            if parsed.kind != kind:
                continue
            event = codec.decode_subject(m.subject, m.data)
            if tag is None or codec.tag_of(event) == tag:
                out.append(event)
        return out

    def audio_in(self) -> list[Msg]:
        return [m for m in self.msgs if m.subject.endswith(".audio.in")]

    async def wait(self, condition: Callable[[], bool], within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_event(self, kind: str, tag: str, within_s: float = 5.0) -> Any:
        await self.wait(lambda: bool(self.events(kind, tag)), within_s)
        return self.events(kind, tag)[0]
