"""Calls published straight onto the bus, as the edge, STT, brain and TTS would have: for the
archiver's tests, which need many calls, long calls, or calls of chosen callers, fast.

Times are on a synthetic clock `t0` (default: an hour ago), so an archive run sees them as
ended long enough ago; the stream sequence, not the clock, is what the projection keys on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import numpy as np

from events import audio, schemas, subjects
from events.audio import FRAME_BYTES, SAMPLE_RATE
from events.bus import Bus

FRAME_S = 0.02


def tone(seconds: float, hz: float, level: float = 6000.0) -> bytes:
    """Whole frames of a tone (the bot's 'speech')."""
    n = int(seconds / FRAME_S) * FRAME_BYTES // 2
    t = np.arange(n) / SAMPLE_RATE
    return (np.sin(2 * np.pi * hz * t) * level).astype("<i2").tobytes()


def noise(seconds: float, seed: int, level: float = 4000.0) -> bytes:
    """Whole frames of noise (the caller's 'speech': uncorrelated with any tone)."""
    n = int(seconds / FRAME_S) * FRAME_BYTES // 2
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(n) * level, -32000, 32000).astype("<i2").tobytes()


@dataclass
class FakeCall:
    """One call's messages, published in the order the real services would."""

    bus: Bus
    caller: str | None = "0612345678"
    call_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    t0: float = field(default_factory=lambda: time.time() - 3600)
    seconds: float = 0.0  # call clock
    in_seq: int = 0
    in_t: float = 0.0  # call-audio time of the caller's stream
    says: int = 0
    turn: int = 0
    state: str = "INIT"
    caller_pcm: list[tuple[float, bytes]] = field(default_factory=list)  # (call time, pcm)
    bot_pcm: list[tuple[float, bytes]] = field(default_factory=list)

    def at(self) -> float:
        return self.t0 + self.seconds

    async def event(self, subject: str, event: schemas.Base) -> int:
        return await self.bus.publish(subject, event)

    async def start(self) -> None:
        cid = self.call_id
        await self.event(
            subjects.event(cid, "started"),
            schemas.Started(call_id=cid, ts=self.t0, caller=self.caller),
        )
        await self.event(
            subjects.event(cid, "claimed"),
            schemas.Claimed(call_id=cid, ts=self.t0, epoch=1, service="brain", instance="t"),
        )

    async def caller_says(self, text: str, seconds: float, *, seed: int = 1) -> None:
        """The caller speaks (audio.in in 20 ms messages), then STT publishes its final."""
        pcm = noise(seconds, seed)
        start_t = self.in_t
        self.caller_pcm.append((self.seconds, pcm))
        for i in range(0, len(pcm), FRAME_BYTES):
            headers = audio.in_headers(self.in_seq, self.at(), self.in_t)
            await self.bus.publish_audio(
                subjects.audio_in(self.call_id), pcm[i : i + FRAME_BYTES], headers
            )
            self.in_seq += 1
            self.in_t += FRAME_S
            self.seconds += FRAME_S
        await self.event(
            subjects.transcript(self.call_id),
            schemas.Final(
                call_id=self.call_id,
                ts=self.at() + 0.3,
                text=text,
                confidence=0.9,
                start=start_t,
                end=self.in_t,
                provider="deepgram",
                latency_ms=300.0,
            ),
        )
        self.seconds += 0.3

    async def bot_says(
        self,
        seconds: float,
        *,
        hz: float = 440.0,
        text: str | None = "texte",
        phrase: str | None = None,
        cut_after: float | None = None,
    ) -> str:
        """The brain says, TTS publishes the audio, the edge plays it (or is cut)."""
        self.says += 1
        u = f"u{self.says}"
        cid = self.call_id
        await self.event(
            subjects.say(cid),
            schemas.Say(
                call_id=cid,
                ts=self.at(),
                utterance_id=u,
                phrase=phrase,
                text=None if phrase else text,
                epoch=1,
            ),
        )
        pcm = tone(seconds, hz)
        step = 5 * FRAME_BYTES
        for i in range(0, len(pcm), step):
            last = i + step >= len(pcm)
            await self.bus.publish_audio(
                subjects.audio_out(cid),
                pcm[i : i + step],
                audio.out_headers(u, i // step, last, epoch=1),
            )
        self.seconds += 0.05
        played = pcm if cut_after is None else pcm[: int(cut_after / FRAME_S) * FRAME_BYTES]
        self.bot_pcm.append((self.seconds, played))
        await self.event(
            subjects.playback(cid),
            schemas.PlaybackStarted(call_id=cid, ts=self.at(), utterance_id=u),
        )
        frames = len(played) // FRAME_BYTES
        self.seconds += frames * FRAME_S
        end: schemas.Playback
        if cut_after is None:
            end = schemas.PlaybackFinished(call_id=cid, ts=self.at(), utterance_id=u, frames=frames)
        else:
            end = schemas.PlaybackInterrupted(
                call_id=cid, ts=self.at(), utterance_id=u, frames=frames, reason="bargein"
            )
        await self.event(subjects.playback(cid), end)
        return u

    async def decide(
        self,
        to: str,
        *,
        text: str | None = None,
        intent: str | None = None,
        outcome: str | None = None,
        slots: dict[str, str] | None = None,
        say_ms: float | None = None,
    ) -> None:
        snapshot: dict[str, object] = {"state": to, "outcome": outcome}
        if slots and "phone" in slots:
            snapshot["phone"] = slots["phone"]
        latency = schemas.Latency(transcript_ms=300.0, say_ms=say_ms) if say_ms else None
        await self.event(
            subjects.decision(self.call_id),
            schemas.Decision(
                call_id=self.call_id,
                ts=self.at(),
                epoch=1,
                turn=self.turn,
                trigger="transcript" if text else "started",
                trigger_seq=0,
                state_from=self.state,
                state_to=to,
                intent=intent,
                slots=slots or {},
                text=text,
                latency=latency,
                snapshot=snapshot,
            ),
        )
        self.turn += 1
        self.state = to

    async def ticket(self, state: str, number: str | None = None) -> None:
        await self.event(
            subjects.event(self.call_id, "ticket"),
            schemas.Ticket(
                call_id=self.call_id,
                ts=self.at(),
                epoch=1,
                state=state,  # type: ignore[arg-type]
                number=number,
                category="internet",
                summary="box: redémarrage sans effet",
                customer_id=1,
            ),
        )

    async def end(self, by: str = "bot") -> None:
        cid = self.call_id
        await self.event(
            subjects.event(cid, "hangup"),
            schemas.Hangup(call_id=cid, ts=self.at(), by=by, reason="dialog_end"),  # type: ignore[arg-type]
        )
        await self.event(
            subjects.event(cid, "ended"),
            schemas.Ended(
                call_id=cid,
                ts=self.at(),
                reason="dialog_end",
                outcome="hangup",
                duration_s=round(self.seconds, 3),
            ),
        )

    async def simple(self, *, ticket: bool = False) -> FakeCall:
        """A short complete call: welcome, one caller turn, an answer, goodbye."""
        await self.start()
        await self.bot_says(1.0, phrase="welcome")
        await self.decide("WELCOME")
        await self.caller_says("Ma box ne marche plus.", 1.0)
        await self.bot_says(1.2, hz=660.0, text="Merci.")
        await self.decide(
            "DIAGNOSTIC", text="Ma box ne marche plus.", intent="internet", say_ms=450.0
        )
        if ticket:
            await self.ticket("requested")
        await self.decide("CLOSED", outcome="ticket" if ticket else "solved")
        await self.end()
        return self


async def until(check: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def wait_rows(
    database_url: str, sql: str, want: object, *args: object, within_s: float = 10.0
) -> object:
    """Poll `sql` until it returns `want` (or the deadline: the last value is returned)."""
    deadline = time.monotonic() + within_s
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        while True:
            try:
                got = await conn.fetchval(sql, *args, timeout=5)
            except (OSError, asyncpg.PostgresError):
                got = None
            if got == want or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
