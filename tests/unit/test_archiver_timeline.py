"""The archive's pure parts: both sides of a call on one clock, the MP3 and its check."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from archiver import mp3
from archiver.archive import Progress
from archiver.timeline import (
    CallAudio,
    InChunk,
    OutChunk,
    Played,
    bot_track,
    caller_track,
    grid_phase,
    on_grid,
    split_bot,
    stereo,
    utterances,
)

SR = 8000
T0 = 1_700_000_000.0
FRAME = 320


def pcm(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SR)) * 3000).astype("<i2").tobytes()


def stream(
    data: bytes,
    at: float,
    *,
    seq0: int = 0,
    t0_audio: float = 0.0,
    jitter: float = 0.004,
    seed: int = 0,
) -> list[InChunk]:
    """The edge's audio.in messages for `data` arriving from call time `at`, 20 ms each."""
    rng = np.random.default_rng(seed)
    out = []
    for k, i in enumerate(range(0, len(data), FRAME)):
        capture = T0 + at + k * 0.02 + float(rng.uniform(0, jitter))
        out.append(InChunk(seq0 + k, capture, t0_audio + k * 0.02, data[i : i + FRAME]))
    return out


def samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2")


def test_a_continuous_caller_stream_is_placed_seamlessly_despite_capture_jitter() -> None:
    speech = pcm(2.0, 1)
    track, notes = caller_track(stream(speech, 1.0, jitter=0.015), T0, 4 * SR)
    at = int(np.flatnonzero(track)[0])
    assert abs(at - SR) <= 0.015 * SR
    assert np.array_equal(track[at : at + len(speech) // 2], samples(speech)), "no gap, no overlap"
    assert notes == []


def test_when_the_caller_sends_nothing_the_pause_is_silence_where_it_was() -> None:
    first, second = pcm(1.0, 1), pcm(1.0, 2)
    chunks = stream(first, 0.5) + stream(second, 3.0, seq0=50, t0_audio=1.0)
    track, _ = caller_track(chunks, T0, 5 * SR)
    start2 = int(np.flatnonzero(track[2 * SR :])[0]) + 2 * SR
    assert abs(start2 - 3 * SR) <= 0.005 * SR
    assert np.abs(track[int(1.6 * SR) : int(2.9 * SR)]).max() == 0
    assert np.array_equal(track[start2 : start2 + SR], samples(second))


def test_a_burst_after_a_stall_stays_glued_to_what_came_before() -> None:
    speech = pcm(1.0, 3)
    chunks = stream(speech, 0.5, jitter=0.0)
    # The second half was held up in the network and arrived all at once, early-looking.
    late = [InChunk(c.seq, chunks[25].capture_ts, c.audio_t, c.pcm) for c in chunks[25:]]
    track, _ = caller_track(chunks[:25] + late, T0, 2 * SR)
    at = int(0.5 * SR)
    assert np.array_equal(track[at : at + SR], samples(speech))


def test_missing_caller_messages_leave_their_length_of_silence_and_a_note() -> None:
    speech = pcm(1.0, 4)
    chunks = stream(speech, 0.0, jitter=0.0)
    del chunks[10:15]
    track, notes = caller_track(chunks, T0, SR)
    assert np.abs(track[int(0.2 * SR) : int(0.3 * SR)]).max() == 0
    assert np.array_equal(track[int(0.3 * SR) : SR], samples(speech)[int(0.3 * SR) :])
    assert notes == ["5 caller audio message(s) missing from AUDIO"]


def test_the_tick_grid_is_found_from_late_reports_and_starts_go_back_to_their_deadline() -> None:
    for phase in (0.0004, 0.011, 0.0197):  # including a grid near the 20 ms wrap-around
        ticks = [phase + k * 0.02 for k in (5, 60, 61, 200, 450)]
        lateness = [0.0003, 0.0009, 0.0151, 0.0012, 0.0004]  # one tick 15 ms late
        reported = [t + late for t, late in zip(ticks, lateness, strict=True)]
        found = grid_phase(reported)
        placed = [on_grid(r, found) for r in reported]
        steps = np.diff(placed) / 0.02
        assert np.allclose(steps, np.round(np.diff(ticks) / 0.02), atol=1e-6), phase
        assert all(0 <= p - t < 0.001 for p, t in zip(placed, ticks, strict=True))


def test_bot_utterances_are_placed_where_played_cut_to_the_frames_played() -> None:
    u1, u2, u3 = pcm(1.0, 5), pcm(2.0, 6), pcm(0.5, 7)
    chunks = [
        OutChunk("u1", 0, u1[:1600]),
        OutChunk("u1", 1, u1[1600:]),
        OutChunk("u2", 0, u2),
        OutChunk("u3", 0, u3),
    ]
    played = [
        Played("u1", T0 + 0.5 + 0.0004, 50),
        # u2 right after u1 (its tick 14 ms late), interrupted after 30 frames.
        Played("u2", T0 + 1.5 + 0.014, 30),
        Played("u3", T0 + 4.0, None),  # on time; no end reported: all of it
    ]
    track, notes = bot_track(chunks, played, T0, 5 * SR)
    assert notes == []
    assert np.array_equal(track[int(0.5 * SR) : int(1.5 * SR)], samples(u1))
    assert np.array_equal(track[int(1.5 * SR) : int(2.1 * SR)], samples(u2)[: int(0.6 * SR)])
    assert np.abs(track[int(2.1 * SR) : 4 * SR]).max() == 0, "the cut utterance stops"
    assert np.array_equal(track[4 * SR : int(4.5 * SR)], samples(u3))


def test_played_utterances_without_audio_are_noted_and_a_takeover_keeps_the_newer_owner() -> None:
    old, new = pcm(0.2, 8), pcm(0.2, 9)
    chunks = [OutChunk("u1", 0, old, epoch=1), OutChunk("u1", 0, new, epoch=2)]
    assert utterances(chunks) == {"u1": new}
    _, notes = bot_track(chunks, [Played("hold-edge", T0 + 1.0, 20)], T0, 2 * SR)
    assert notes == ["1 played utterance(s) with no audio in AUDIO (edge phrases)"]


def test_the_bot_side_comes_back_out_of_its_track_per_utterance() -> None:
    u1, u2 = pcm(0.4, 10), pcm(0.6, 11)
    played = [Played("u1", T0 + 0.3, 20), Played("u2", T0 + 0.7 + 0.003, 30)]
    track, _ = bot_track([OutChunk("u1", 0, u1), OutChunk("u2", 0, u2)], played, T0, 2 * SR)
    assert split_bot(track, played, T0) == [("u1", u1), ("u2", u2)]


def test_a_stereo_mp3_decodes_to_both_sides_for_exactly_the_call(tmp_path: Path) -> None:
    caller, bot = pcm(1.0, 12), (np.sin(np.arange(SR) * 0.3) * 6000).astype("<i2").tobytes()
    call = CallAudio(
        "c",
        T0,
        3.0,
        stream(caller, 0.5),
        [OutChunk("u1", 0, bot)],
        [Played("u1", T0 + 1.8, 50)],
    )
    left, right, notes = stereo(call)
    result = mp3.archive_call(mp3.Job(call, tmp_path / "2026" / "c.mp3", 64_000))
    assert result.verified and result.error is None and notes == []
    assert result.duration_s == 3.0 and result.sha256 == mp3.sha256(result.path)
    assert not list(tmp_path.rglob("*.part"))
    dl, dr, rate = mp3.decode(result.path)
    assert rate == SR and len(dl) == len(left) == 3 * SR

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a.astype(float), b.astype(float)
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))

    assert corr(dl, left) > 0.95 and corr(dr, right) > 0.95
    assert abs(corr(dl, right)) < 0.05 and abs(corr(dr, left)) < 0.05, "no side bleeds"


def test_a_damaged_mp3_does_not_verify(tmp_path: Path) -> None:
    call = CallAudio("c", T0, 2.0, stream(pcm(1.0, 13), 0.2), [], [])
    result = mp3.archive_call(mp3.Job(call, tmp_path / "c.mp3", 32_000))
    data = result.path.read_bytes()
    result.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(mp3.Mp3Error, match="decodes to"):
        mp3.verify(result.path, 2.0)
    assert not mp3.check_file("c", result.path, 2.0, result.sha256).verified
    result.path.write_bytes(data)
    assert mp3.check_file("c", result.path, 2.0, result.sha256).verified
    assert not mp3.check_file("c", result.path, 2.0, "0" * 64).verified, "another file"


def test_an_encoding_failure_leaves_no_partial_file(tmp_path: Path) -> None:
    call = CallAudio("c", T0, 1.0, stream(pcm(0.5, 14), 0.0), [], [])
    blocked = tmp_path / "file"
    blocked.write_text("a file where the day's folder should be")
    result = mp3.archive_call(mp3.Job(call, blocked / "c.mp3", 64_000))
    assert not result.verified and result.error is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_under_cron() -> None:
    plain = io.StringIO()
    p = Progress(plain, 2, "archive")
    p.step("archived a: 60.0 s", audio_s=60.0)
    p.step("FAILED b: no", failed=True)
    p.close()
    assert plain.getvalue() == "archived a: 60.0 s\nFAILED b: no\n"
    tty = Terminal()
    p = Progress(tty, 2, "archive")
    p.step("archived a: 60.0 s", audio_s=60.0)
    p.step("FAILED b: no", failed=True)
    p.close()
    text = tty.getvalue()
    assert "archived a" not in text, "a terminal gets the bar, not a line per call"
    assert "FAILED b: no" in text and "[##############################] 2/2 calls" in text
    assert "1.0 min of audio" in text and "1 failed" in text
