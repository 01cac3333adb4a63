"""Fencing: drop what a stale owner says after another instance took the call over.

Each worker kind owns a call through a claim whose epoch grows with every hand-over; an owner
publishes `event.claimed` with its epoch first and stamps the epoch on everything it says. A
receiver keeps the newest epoch seen per worker kind and drops messages carrying an older one.
Epoch 0 means "not from a claimed owner" (the edge, a replay tool, a message from before
epochs existed) and always passes. Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

# Which worker kind speaks on each subject kind.
OWNER_OF: Final[dict[str, str]] = {
    "transcript": "stt_worker",
    "decision": "brain",
    "say": "brain",
    "control": "brain",
    "audio.out": "tts_worker",
}


class Fence:
    """The newest claim epoch seen per worker kind, for one call."""

    __slots__ = ("_epochs", "dropped")

    def __init__(self) -> None:
        self._epochs: dict[str, int] = {}
        self.dropped = 0

    def claimed(self, service: str, epoch: int) -> None:
        if epoch > self._epochs.get(service, 0):
            self._epochs[service] = epoch

    def epoch(self, service: str) -> int:
        return self._epochs.get(service, 0)

    def allows(self, service: str, epoch: int) -> bool:
        """True for the current owner's messages (which also moves the epoch forward)."""
        if epoch <= 0:
            return True
        newest = self._epochs.get(service, 0)
        if epoch < newest:
            self.dropped += 1
            return False
        self._epochs[service] = epoch
        return True
