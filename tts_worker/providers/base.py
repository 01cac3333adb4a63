"""The one hook a TTS provider implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class ProviderError(Exception):
    """A provider failure converted at the boundary; `retryable` says if a retry may help."""

    retryable = True


class ProviderTimeout(ProviderError):
    pass


class TtsProvider(Protocol):
    name: str

    def speak(self, text: str) -> AsyncIterator[bytes]:
        """Synthesize French `text`; yield s16le 8 kHz mono PCM as it is produced (any chunk
        size; the worker cuts 320 B frames). Cancelling the iteration stops the synthesis."""
        ...
