"""The load caller against a trivial AudioSocket server whose timing is known.

The server paces every call from one ticker, says a 0.3 s tone on connecting, answers each
caller line with a tone once it has heard 10 quiet frames after it (200 ms), hangs up after
answering the second line, and drops one chosen call (TCP close, no hang-up message). So each
turn's latency is 200 ms plus at most a tick, and the caller's figures must say so.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest

from edge import framing
from edge.framing import Kind, Parser
from events.audio import SILENCE
from voicebot.caller import Step
from voicebot.load_caller import LoadOptions, LoadRun
from voicebot.load_figures import ProviderDelays
from voicebot.load_report import figures
from voicebot.load_script import prepare

pytestmark = pytest.mark.integration

ANSWER_AFTER_FRAMES = 10  # quiet frames heard after a line before the server answers
TONE = np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 8000
TONE_FRAMES = [
    framing.encode_audio(TONE[i : i + 160].astype("<i2").tobytes()) for i in range(0, 8000, 160)
]
QUIET = framing.encode_audio(SILENCE)


class Leg(asyncio.Protocol):
    def __init__(self, server: TrivialServer) -> None:
        self.server = server
        self.parser = Parser(server_side=True)
        self.transport: asyncio.Transport | None = None
        self.call_id = ""
        self.queue: list[bytes] = list(TONE_FRAMES[:15])  # the welcome, 0.3 s
        self.heard_voice = False
        self.quiet = 0
        self.answered = 0
        self.arrivals: list[float] = []  # loop time of each audio message

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        for msg in self.parser.feed(data):
            if msg.kind == Kind.UUID:
                self.call_id = str(uuid.UUID(bytes=msg.payload))
                self.server.legs.add(self)
                self.server.all_legs.append(self)
                if self.call_id == self.server.drop:
                    asyncio.get_running_loop().call_later(1.0, self._drop)
                continue
            self.arrivals.append(asyncio.get_running_loop().time())
            loud = np.abs(np.frombuffer(msg.payload, "<i2")).max() > 1000
            if loud:
                self.heard_voice, self.quiet = True, 0
            elif self.heard_voice:
                self.quiet += 1
                if self.quiet == ANSWER_AFTER_FRAMES:
                    self.heard_voice = False
                    self.answered += 1
                    self.queue += TONE_FRAMES[:15]

    def tick(self) -> None:
        assert self.transport is not None
        if self.queue:
            self.transport.write(self.queue.pop(0))
        elif self.answered >= 2:
            self.transport.write(framing.HANGUP_MESSAGE)
            self.transport.close()
            self.server.legs.discard(self)
        else:
            self.transport.write(QUIET)

    def _drop(self) -> None:
        self.server.legs.discard(self)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.legs.discard(self)


class TrivialServer:
    def __init__(self, drop: str) -> None:
        self.legs: set[Leg] = set()
        self.all_legs: list[Leg] = []
        self.drop = drop

    port = 0

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.listener = await loop.create_server(lambda: Leg(self), "127.0.0.1", 0)
        self.deadline = loop.time()
        self._tick()
        return int(self.listener.sockets[0].getsockname()[1])

    def _tick(self) -> None:
        for leg in list(self.legs):
            leg.tick()
        loop = asyncio.get_running_loop()
        self.deadline += 0.02
        while self.deadline <= loop.time():
            self.deadline += 0.02
        self.handle = loop.call_at(self.deadline, self._tick)

    def close(self) -> None:
        self.handle.cancel()
        self.listener.close()


@pytest.fixture
async def trivial() -> AsyncIterator[TrivialServer]:
    s = TrivialServer(str(uuid.uuid4()))
    s.port = await s.start()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
async def server(trivial: TrivialServer) -> tuple[int, str]:
    return trivial.port, trivial.drop


@pytest.mark.timeout(30)
async def test_turns_pacing_and_outcomes_as_the_server_made_them(
    server: tuple[int, str],
) -> None:
    port, drop = server
    steps = prepare([Step("say", "un"), Step("say", "deux")], synth=None, keyed=True)
    ids = [drop, *(str(uuid.uuid4()) for _ in range(9))]
    opts = LoadOptions(port=port, calls=10, duration_s=8.0, end_of_turn_s=0.3)
    result = await LoadRun(opts, steps, ids).run()
    figs = figures(result, None, ProviderDelays())

    by_id = {leg.call_id: leg for leg in result.legs}
    assert by_id[drop].outcome == "dropped"
    assert "without a hang-up" in by_id[drop].reason
    assert by_id[drop].pacing.deficit > 200  # ~6 s of frames it never got
    assert figs["dropped"] == 1 and figs["completed"] == 9
    others = [leg for leg in result.legs if leg.call_id != drop]
    for leg in others:
        answered = [t for t in leg.turns if t.line is not None]
        assert len(answered) == 2 and all(t.answered for t in answered)
        for t in answered:
            # 10 quiet frames of 20 ms, then the next tick: 200 to 220 ms, plus what the two
            # loops (one process) took to turn round.
            assert t.latency_s is not None and 0.19 <= t.latency_s <= 0.2 + 0.3
        assert leg.pacing.frames > 100
    assert figs["turn_latency_ms"]["turns"] == 18
    assert figs["welcome_ms"]["turns"] == 10
    assert figs["caller_tick"]["lateness_p99_ms"] is not None


def _clock_offsets_ms(server: TrivialServer) -> list[int]:
    """Each call's frame clock against the first call's, in 5 ms steps (0-3): the median
    offset of its frames' arrivals within the 20 ms period."""
    phases = [float(np.median(np.mod(leg.arrivals, 0.02))) for leg in server.all_legs]
    return sorted(round(((p - phases[0]) % 0.02) / 0.005) % 4 for p in phases)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("phases", "offsets"), [(4, [0, 0, 1, 1, 2, 2, 3, 3]), (1, [0] * 8)])
async def test_the_calls_clocks_are_spread_over_the_frame_period(
    trivial: TrivialServer, phases: int, offsets: list[int]
) -> None:
    # Asterisk's channels are not in step: with one clock for all calls, every turn of a run
    # met the edge's 20 ms grid at the same offset.
    steps = prepare([Step("wait", "5")], synth=None, keyed=True)
    opts = LoadOptions(port=trivial.port, calls=8, duration_s=2.0, phases=phases)
    await LoadRun(opts, steps).run()
    assert len(trivial.all_legs) == 8 and all(len(leg.arrivals) > 50 for leg in trivial.all_legs)
    assert _clock_offsets_ms(trivial) == offsets
