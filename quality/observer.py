"""The harness's peek at the bot's side: which question is being asked, read from NATS.

A scripted caller answers the question the bot asked, so it needs to know which one that was
and when the bot finished asking it: the latest `decision` (its snapshot names the awaited
utterance), the `say` of that utterance (its phrase key or text) and the edge's `playback` of it.
After the call, the call's whole history is read back from the CALLS stream for the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from events import schemas, subjects
from events.auth import Login
from events.bus import Bus, Envelope

WATCHED = ("decision", "say", "playback", "transcript", "event.>")
# A say whose playback has not started this long after it was published is taken as dropped
# (flushed before it played): the caller stops waiting for it.
SAY_START_WINDOW_S = 3.0


@dataclass(frozen=True)
class Question:
    """What the bot is waiting for an answer to."""

    utterance_id: str
    phrase: str | None  # cached phrase key, or None for dynamic text
    text: str | None
    state: str
    expecting: str | None
    confirming_phone: bool
    finished_at: float  # monotonic time the bot's last words finished (or were cut)


@dataclass
class CallView:
    """One call as the bot's messages describe it, updated live."""

    call_id: str
    snapshot: dict[str, Any] = field(default_factory=dict)
    expecting: str | None = None
    says: dict[str, schemas.Say] = field(default_factory=dict)
    said_at: dict[str, float] = field(default_factory=dict)  # utterance id -> monotonic time
    started: set[str] = field(default_factory=set)
    finished: dict[str, float] = field(default_factory=dict)  # utterance id -> monotonic time
    ended: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, event: Any) -> None:
        match event:
            case schemas.Decision(snapshot=snap, expecting=expecting):
                self.snapshot, self.expecting = snap, expecting
            case schemas.Say(utterance_id=u):
                self.says[u] = event
                self.said_at.setdefault(u, time.monotonic())
            case schemas.PlaybackStarted(utterance_id=u):
                self.started.add(u)
            case (
                schemas.PlaybackFinished(utterance_id=u)
                | schemas.PlaybackInterrupted(utterance_id=u)
            ):
                self.finished.setdefault(u, time.monotonic())
            case schemas.Ended():
                self.ended = True
            case _:
                return
        self._changed.set()

    @property
    def ending(self) -> bool:
        """The bot decided to end the call (goodbye, transfer) or it is over."""
        snap = self.snapshot
        return self.ended or snap.get("state") == "CLOSED" or bool(snap.get("ending"))

    def question(self, answered: str | None) -> Question | None:
        """The awaited prompt, once the bot has finished saying it and has nothing else to say,
        if it is not the one the caller answered last."""
        uid = self.snapshot.get("awaiting")
        if not uid or uid == answered or uid not in self.finished or uid not in self.says:
            return None
        if self.speaking():
            return None
        say = self.says[uid]
        return Question(
            utterance_id=uid,
            phrase=say.phrase,
            text=say.text,
            state=str(self.snapshot.get("state", "")),
            expecting=self.expecting,
            confirming_phone=bool(self.snapshot.get("confirming_phone")),
            finished_at=max(self.finished.values()),  # the bot's last words, not the prompt's
        )

    def speaking(self) -> bool:
        """The bot is saying something, or is about to: a say was published (its decision,
        which names the new awaited prompt, follows it) and has not played to its end."""
        now = time.monotonic()
        return any(
            u not in self.finished and (u in self.started or now - t < SAY_START_WINDOW_S)
            for u, t in self.said_at.items()
        )

    async def wait_question(self, answered: str | None, within_s: float) -> Question | str:
        """The next question; or "ending" once the bot ends the call; or "timeout"."""
        deadline = time.monotonic() + within_s
        while True:
            if self.ending:
                return "ending"
            q = self.question(answered)
            if q is not None:
                return q
            if not await self._next_change(deadline):
                return "timeout"

    async def wait_ended(self, within_s: float) -> bool:
        """Wait until the edge reports the call's end."""
        deadline = time.monotonic() + within_s
        while not self.ended:
            if not await self._next_change(deadline):
                return False
        return True

    async def _next_change(self, deadline: float) -> bool:
        """Wait for a message, or half a second (conditions also change with time)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return True


class Watch:
    """One NATS connection for all the harness's calls."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.views: dict[str, CallView] = {}
        self._subs: list[Any] = []

    @classmethod
    async def connect(cls, url: str) -> Watch:
        # Read only, as `voicebot trace` does: the `tracer` user of nats-auth.conf.
        login = Login.from_env("tracer")
        watch = cls(await Bus.connect(url, "quality", login=login, connect_timeout=5))
        for kind in WATCHED:
            watch._subs.append(await watch.bus.subscribe(f"call.*.{kind}", watch._on))
        return watch

    async def close(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        await self.bus.close()

    async def _on(self, env: Envelope) -> None:
        view = self.views.get(getattr(env.event, "call_id", ""))
        if view is not None:
            view.on_event(env.event)

    def open(self, call_id: str) -> CallView:
        view = self.views[call_id] = CallView(call_id)
        return view

    async def history(self, call_id: str, within_s: float = 15.0) -> list[Any]:
        """The call's stored events, once the edge reported its end and the brain closed it
        (or after `within_s`: whatever is stored by then)."""
        self.views.pop(call_id, None)
        deadline = time.monotonic() + within_s
        while True:
            events = [e.event for e in await self.bus.history(subjects.all_of(call_id))]
            ended = any(isinstance(e, schemas.Ended) for e in events)
            closed = any(isinstance(e, schemas.Decision) and e.state_to == "CLOSED" for e in events)
            if (ended and closed) or time.monotonic() > deadline:
                return events
            await asyncio.sleep(0.3)
