"""A call's two sides on one clock, from its AUDIO messages. Pure (numpy), no I/O.

The clock is the edge's wall clock from `event.started`, the moment the edge accepted the call.

- Caller (left): each `audio.in` message carries its call-audio time (`Voicebot-Audio-T`, the
  bytes received before it) and its capture time (`Voicebot-Capture-Ts`, when the edge read
  it). Audio-T keeps a continuous stream seamless; capture time says where a stream resumed
  after the caller sent nothing (Asterisk sends no frames for a silent channel), which becomes
  silence. A message arriving late by scheduling jitter stays glued to the one before it;
  only a shift of more than `RESYNC_S` moves the stream on the clock.
- Bot (right): `audio.out` is published ahead of time, as fast as it is synthesized, so its
  own timing says nothing about when it was heard. The edge reports that: `playback.started`
  (the tick of the utterance's first frame) and `finished`/`interrupted` with the number of
  frames actually written. Each utterance is placed at its start, snapped to the edge's 20 ms
  tick grid (see `grid_phase`), cut to the frames played (a barge-in cuts it short), and never
  overlaps the one before (the edge plays them one after the other). Under-runs and skipped
  ticks inside an utterance are not timestamped by the contract, so such an utterance is
  placed as if played without a gap (a few frames late at its end at worst).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from events import schemas
from events.audio import FRAME_BYTES, SAMPLE_RATE

RESYNC_S = 0.06  # 3 frames: larger than the edge's read jitter, well under a word
FRAME_S = FRAME_BYTES / 2 / SAMPLE_RATE
ON_TIME_S = 0.002  # a tick's usual lateness is well under this (bench/edge_pacing.py)
Samples = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class InChunk:
    seq: int
    capture_ts: float
    audio_t: float
    pcm: bytes


@dataclass(frozen=True, slots=True)
class OutChunk:
    utterance_id: str
    seq: int
    pcm: bytes
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class Played:
    """The edge's report of one utterance: when its first frame went out, how many did."""

    utterance_id: str
    started_ts: float
    frames: int | None  # None: no end reported (the edge died mid-utterance)


@dataclass(frozen=True)
class CallAudio:
    call_id: str
    started_ts: float
    duration_s: float
    caller: list[InChunk] = field(default_factory=list)
    bot: list[OutChunk] = field(default_factory=list)
    played: list[Played] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return round(self.duration_s * SAMPLE_RATE)


def played(events: Iterable[Any]) -> list[Played]:
    """The edge's playback reports of a call (decoded events, any kinds mixed in)."""
    started: dict[str, float] = {}
    frames: dict[str, int] = {}
    for event in events:
        match event:
            case schemas.PlaybackStarted(utterance_id=u, ts=ts):
                started.setdefault(u, ts)
            case (
                schemas.PlaybackFinished(utterance_id=u, frames=n)
                | schemas.PlaybackInterrupted(utterance_id=u, frames=n)
            ):
                frames[u] = n
    return [Played(u, ts, frames.get(u)) for u, ts in started.items()]


def caller_track(chunks: list[InChunk], t0: float, n: int) -> tuple[Samples, list[str]]:
    """The caller's side, `n` samples from `t0`, and notes on what was missing."""
    track = np.zeros(n, np.int16)
    notes: list[str] = []
    offset: float | None = None  # seconds from call-audio time to the call clock
    expected = None
    missing = 0
    for c in sorted(chunks, key=lambda c: c.seq):
        if expected is not None and c.seq != expected:
            missing += max(0, c.seq - expected)
        expected = c.seq + 1
        o = c.capture_ts - t0 - c.audio_t
        # Only forward: an earlier-looking capture is a delayed stream catching up, and
        # moving back would overlap audio already placed.
        if offset is None or o > offset + RESYNC_S:
            offset = o
        _put(track, round((c.audio_t + offset) * SAMPLE_RATE), c.pcm)
    if chunks and min(c.seq for c in chunks) > 0:
        notes.append("the start of the caller's audio is no longer in AUDIO")
    if missing:
        notes.append(f"{missing} caller audio message(s) missing from AUDIO")
    return track, notes


def bot_track(
    chunks: list[OutChunk], played: list[Played], t0: float, n: int
) -> tuple[Samples, list[str]]:
    """The bot's side as the edge played it, `n` samples from `t0`."""
    track = np.zeros(n, np.int16)
    notes: list[str] = []
    audio = utterances(chunks)
    end = 0
    absent = 0
    phase = grid_phase([p.started_ts - t0 for p in played])
    for p in sorted(played, key=lambda p: p.started_ts):
        pcm = audio.get(p.utterance_id)
        if pcm is None:
            absent += p.frames is None or p.frames > 0
            continue
        if p.frames is not None:
            pcm = pcm[: p.frames * FRAME_BYTES]
        at = max(end, round(on_grid(p.started_ts - t0, phase) * SAMPLE_RATE))
        _put(track, at, pcm)
        end = at + len(pcm) // 2
    if absent:
        notes.append(f"{absent} played utterance(s) with no audio in AUDIO (edge phrases)")
    return track, notes


def grid_phase(offsets: list[float]) -> float:
    """Where the edge's 20 ms ticks fall, from the reported starts.

    The edge writes every frame on one grid of absolute deadlines and times a report just
    after the tick that wrote the utterance's first frame: a report is its tick's deadline
    plus that tick's lateness, never minus, and nearly always well under a millisecond. The
    phase is the report that most others agree with (within `ON_TIME_S` after it; the least
    total lateness breaks ties); each start then goes back to the deadline before it
    (`on_grid`). Utterances played back to back stay back to back to the sample, whatever a
    tick's lateness, as long as it is under a period (a later tick is skipped by the edge and
    its report is late by whole frames)."""
    if not offsets:
        return 0.0
    residues = np.asarray(offsets) % FRAME_S
    late = (residues[None, :] - residues[:, None]) % FRAME_S  # row: a candidate phase
    late[late > FRAME_S - 1e-6] = 0.0  # float residue of a whole number of frames
    agree = (late < ON_TIME_S).sum(axis=1)
    best = np.flatnonzero(agree == agree.max())
    return float(residues[best[np.argmin(late[best].sum(axis=1))]])


def on_grid(offset: float, phase: float) -> float:
    """The tick deadline at or before `offset` (seconds from the call's start)."""
    return phase + math.floor((offset - phase) / FRAME_S + 1e-6) * FRAME_S


def utterances(chunks: list[OutChunk]) -> dict[str, bytes]:
    """Each utterance's audio in order; if two TTS owners both spoke it (a takeover), the
    newer owner's messages only."""
    by_id: dict[str, list[OutChunk]] = defaultdict(list)
    for c in chunks:
        by_id[c.utterance_id].append(c)
    out = {}
    for u, cs in by_id.items():
        newest = max(c.epoch for c in cs)
        out[u] = b"".join(c.pcm for c in sorted(cs, key=lambda c: c.seq) if c.epoch == newest)
    return out


def stereo(call: CallAudio) -> tuple[Samples, Samples, list[str]]:
    """Left (caller) and right (bot) tracks of the whole call, and notes."""
    n = call.samples
    left, notes_in = caller_track(call.caller, call.started_ts, n)
    right, notes_out = bot_track(call.bot, call.played, call.started_ts, n)
    return left, right, notes_in + notes_out


def _put(track: Samples, at: int, pcm: bytes) -> None:
    if at >= len(track) or not pcm:
        return
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2")
    if at < 0:
        samples, at = samples[-at:], 0
    room = len(track) - at
    track[at : at + min(room, len(samples))] = samples[:room]


# --- back from the MP3 (export from the archive) ------------------------------------------


def split_caller(left: Samples, chunk_ms: int = 200) -> list[tuple[float, bytes]]:
    """The caller's track as (call time, pcm) messages of `chunk_ms`."""
    step = SAMPLE_RATE * chunk_ms // 1000
    return [(i / SAMPLE_RATE, left[i : i + step].tobytes()) for i in range(0, len(left), step)]


def split_bot(right: Samples, played: list[Played], t0: float) -> list[tuple[str, bytes]]:
    """Each played utterance's audio cut back out of the bot's track, in whole frames."""
    out = []
    end = 0
    frame = FRAME_BYTES // 2
    phase = grid_phase([p.started_ts - t0 for p in played])
    for p in sorted(played, key=lambda p: p.started_ts):
        if not p.frames:
            continue
        at = max(end, round(on_grid(p.started_ts - t0, phase) * SAMPLE_RATE))
        pcm = right[at : at + p.frames * frame]
        pcm = pcm[: len(pcm) // frame * frame]
        end = at + len(pcm)
        if len(pcm):
            out.append((p.utterance_id, pcm.tobytes()))
    return out
