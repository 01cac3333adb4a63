"""What the pipeline said about the load calls, read from NATS: each call's finals and says.

With it, every answered line's wait splits into the recogniser's part (end of the line -> its
final transcript published), the brain's (final -> the answer's `say`) and the way out (`say`
-> first bot frame heard), and the answer is known as a cached phrase or synthesised text. One
core subscription per subject pattern for all calls, as the read-only `tracer` user; nothing is
stored, and a load run without NATS simply has no breakdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.aio.msg import Msg

from events import codec, schemas
from events.auth import Login

log = logging.getLogger("voicebot.load")


@dataclass(frozen=True, slots=True)
class Said:
    ts: float  # wall clock of the brain's `say`
    kind: str  # phrase | text


@dataclass
class CallEvents:
    finals: list[float] = field(default_factory=list)  # wall clock of each final transcript
    says: list[Said] = field(default_factory=list)


class SayFollower:
    def __init__(self) -> None:
        self.calls: dict[str, CallEvents] = defaultdict(CallEvents)
        self.bad = 0
        self._nc: Client | None = None

    async def start(self, url: str, login: Login) -> bool:
        """Follow the pipeline's finals and says; False (and a log line) without NATS."""
        try:
            nc = await connect_once(url, login, "voicebot-load")
        except Exception as e:
            log.warning("no NATS at %s (%s): turn latency without its breakdown", url, e)
            return False
        self._nc = nc
        await nc.subscribe("call.*.transcript", cb=self._on_msg)
        await nc.subscribe("call.*.say", cb=self._on_msg)
        await nc.flush(timeout=2)
        return True

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def _on_msg(self, msg: Msg) -> None:
        try:
            event = codec.decode_subject(msg.subject, msg.data)
        except codec.BadMessage:
            self.bad += 1
            return
        call = self.calls[event.call_id]
        match event:
            case schemas.Final(ts=ts, text=text) if text.strip():
                call.finals.append(ts)
            case schemas.Say(ts=ts, phrase=phrase):
                call.says.append(Said(ts, "phrase" if phrase is not None else "text"))


async def connect_once(url: str, login: Login, name: str) -> Client:
    """One connection attempt, bounded and quiet, without reconnection: a test caller goes on
    without NATS rather than wait for it (nats-py keeps trying an absent server, and a refused
    login, every 250 ms, with a warning each time). Raises, saying why, when it fails."""
    if not await _listening(url):
        raise ConnectionRefusedError("nothing listens there")
    credentials = login.connect_options(url)
    nc = Client()
    try:
        async with asyncio.timeout(3.0):
            await nc.connect(
                url,
                name=name,
                connect_timeout=1,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=_quiet,
                user=credentials.get("user"),
                password=credentials.get("password"),
            )
    except BaseException as e:
        # Closed by hand: nats-py leaves a refused connection's socket open.
        with contextlib.suppress(Exception):
            await nc.close()
        if isinstance(e, TimeoutError):
            raise TimeoutError("no answer within 3 s") from None
        raise
    return nc


async def _quiet(e: Exception) -> None:
    log.debug("load follower: NATS error %r", e)


async def _listening(url: str) -> bool:
    """Is anything listening at the first server of `url` (nats-py logs a traceback per try)?"""
    parsed = urlsplit(url.split(",", maxsplit=1)[0].strip())
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_connection(parsed.hostname, parsed.port or 4222)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
