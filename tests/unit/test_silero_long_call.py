"""Silero over a whole call, not one clip: every caller line must still be heard after many.

`make quality` found the STT deaf mid-call: Silero's recurrent state, fed line after line of the
MBROLA fr1 voice with the telephone's digital silence between them, drifted until it scored
every later line below 0.02, so the caller's answers were never transcribed and the call ended
in no_input while they talked. The recorded lines (tests/fixtures/stt/turns) are played one
after another as a call would bring them."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest

from stt_worker.silero import SileroVad
from stt_worker.turn import Onset, TurnTaker

TURNS = Path(__file__).parent.parent / "fixtures" / "stt" / "turns"
GAP_S = 4.0  # the bot's turn: the caller's line is silent (all zero samples) meanwhile


def _pcm(name: str) -> bytes:
    with wave.open(str(TURNS / name), "rb") as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        return w.readframes(w.getnframes())


def _call(voice: str) -> tuple[bytes, list[tuple[float, float]]]:
    """Every recorded line of `voice`, twice over, with the bot's turns between them; and
    where each line's speech is, in call seconds."""
    meta = json.loads((TURNS / "turns.json").read_text())
    names = sorted(n for n in meta if n.startswith(voice))
    pcm, spans = bytearray(bytes(int(GAP_S * 16000))), []
    for name in names * 2:
        at = len(pcm) / 16000
        speech = meta[name]["speech"]
        spans.append((at + speech[0][0], at + speech[-1][1]))
        pcm += _pcm(name) + bytes(int(GAP_S * 16000))
    return bytes(pcm), spans


def _onsets(vad: SileroVad, pcm: bytes) -> list[float]:
    turns = TurnTaker(vad.probability, vad.window)
    out = []
    for i in range(0, len(pcm), 320):  # 20 ms, as the edge sends them
        out += [e.at for e in turns.feed(pcm[i : i + 320]) if isinstance(e, Onset)]
    return out


def _heard(onsets: list[float], spans: list[tuple[float, float]]) -> list[bool]:
    return [any(a - 0.1 <= t <= b for t in onsets) for a, b in spans]


@pytest.mark.parametrize("voice", ["mb-fr1", "mb-fr4"])
def test_every_line_of_a_long_call_is_heard(voice: str) -> None:
    pcm, spans = _call(voice)
    heard = _heard(_onsets(SileroVad(), pcm), spans)
    assert all(heard), f"lines not heard: {[i for i, h in enumerate(heard) if not h]}"


def test_without_the_reset_the_fr1_voice_goes_unheard_mid_call() -> None:
    """What the reset is for (the pinned model, deterministic on CPU)."""
    pcm, spans = _call("mb-fr1")
    heard = _heard(_onsets(SileroVad(reset_after=10**9), pcm), spans)
    assert not all(heard)
