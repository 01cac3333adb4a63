"""A worker's connection to a cloud provider: kept between requests, opened ahead of need.

The SDKs' pools (httpx) drop an idle connection after 5 s, and a caller's lines come 5 to 8 s
apart: most requests paid a new TCP and TLS handshake, round trips to the service on the
caller's wait. The brain (Groq) and the TTS worker (OpenAI) keep it `KEEPALIVE_S`, and open one
when they start and when a call starts if none is kept (`python -m bench provider_connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

# Idle connections kept this long: web servers commonly keep one 60 s or more (nginx 75 s).
KEEPALIVE_S: Final = 60.0
WARM_MARGIN_S: Final = 5.0  # open one when the kept connection may be about to go


class KeptConnection:
    """When the last request went out, so whether a connection is still kept."""

    def __init__(self, keepalive_s: float = KEEPALIVE_S) -> None:
        self.keepalive_s = keepalive_s
        self._used_at = -math.inf  # monotonic

    def used(self) -> None:
        """A request is going out: its connection is kept `keepalive_s` after it."""
        self._used_at = time.monotonic()

    async def warm(self, request: Callable[[], Awaitable[object]], timeout_s: float) -> None:
        """`request()` (a cheap one, `GET /models`) unless a connection is kept. A failure is
        left to the request that needs the connection."""
        if time.monotonic() - self._used_at < self.keepalive_s - WARM_MARGIN_S:
            return
        self.used()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout_s):
                await request()
