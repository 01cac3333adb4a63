"""OpenAI speech (`tts-1`) through the `openai` SDK, streamed as raw 24 kHz PCM.

Errors are converted here into our own: a timeout (connect, first byte, or a stall between
chunks) becomes ProviderTimeout, anything else ProviderError. The SDK's own retries are off:
the worker's answer to a failure is the offline voice, at once, not a second wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Final

import openai

try:  # openai 3.x ships on httpx2; 1.x and 2.x on httpx: stream errors come from whichever
    import httpx2 as http
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx as http  # type: ignore[no-redef]

from events.kept_connection import KEEPALIVE_S, KeptConnection
from tts_worker.providers.base import ProviderError, ProviderTimeout
from tts_worker.resample import AudioPool

log = logging.getLogger("tts_worker.providers.openai")

OPENAI_RATE_HZ: Final = 24000  # response_format="pcm": s16le mono 24 kHz
_CHUNK: Final = 4800  # 100 ms at 24 kHz


class OpenAIProvider:
    name = "openai"
    native_rate = OPENAI_RATE_HZ

    def __init__(
        self,
        pool: AudioPool,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "tts-1",
        voice: str = "alloy",
        timeout_s: float = 5.0,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self.pool = pool
        self.model = model
        self.voice = voice
        self.timeout_s = timeout_s
        self.connection = KeptConnection(keepalive_s)
        # Idle connections kept `keepalive_s`, not the SDK pool's 5 s (events/kept_connection.py).
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(
                limits=http.Limits(
                    max_connections=1000,
                    max_keepalive_connections=100,
                    keepalive_expiry=keepalive_s,
                )
            ),
        )

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.name, self.voice, self.model)

    async def close(self) -> None:
        await self.client.close()

    async def warm(self) -> None:
        """Open a connection now if none is kept, when a call starts: its first synthesised
        answer then pays no handshakes."""
        await self.connection.warm(self.client.models.list, self.timeout_s)

    async def speak_native(self, text: str, speed: float = 1.0) -> AsyncGenerator[bytes, None]:
        """`text` as 24 kHz s16le chunks as they arrive; cancelling closes the HTTP stream.
        `speed` is OpenAI's own (0.25-4.0; below 1 when the caller asked us to slow down)."""
        self.connection.used()
        request = self.client.audio.speech.with_streaming_response.create(
            model=self.model,
            voice=self.voice,
            input=text,
            response_format="pcm",
            speed=min(4.0, max(0.25, speed)),
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                # The SDK's timeouts should catch a silent server; these bounds do not depend on it.
                async with asyncio.timeout(self.timeout_s):
                    response = await stack.enter_async_context(request)
                chunks = response.iter_bytes(_CHUNK)
                while True:
                    async with asyncio.timeout(self.timeout_s):
                        chunk = await anext(chunks, None)
                    if chunk is None:
                        return
                    yield chunk
        except TimeoutError as e:
            raise ProviderTimeout(f"openai: nothing received for {self.timeout_s:.1f} s") from e
        except (openai.APITimeoutError, http.TimeoutException) as e:
            raise ProviderTimeout(f"openai: {e!r}") from e
        except openai.APIStatusError as e:
            err = ProviderError(f"openai: HTTP {e.status_code}: {e.message}")
            err.retryable = e.status_code == 429 or e.status_code >= 500
            raise err from e
        except (openai.APIError, http.HTTPError) as e:
            raise ProviderError(f"openai: {e!r}") from e

    async def speak(self, text: str) -> AsyncGenerator[bytes, None]:
        stream = self.pool.stream(OPENAI_RATE_HZ)
        try:
            async for chunk in self.speak_native(text):
                out = await stream.feed(chunk)
                if out:
                    yield out
            yield await stream.finish()
        finally:
            stream.close()
