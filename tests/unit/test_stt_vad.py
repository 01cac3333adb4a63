"""The energy VAD segmenter on synthetic audio: onsets, utterance bounds, caps, noise."""

from __future__ import annotations

import numpy as np
import pytest

from stt_worker.vad import FRAME_S, Onset, Segmenter, Utterance, VadConfig

RATE = 8000


def tone(seconds: float, dbfs: float = -20.0, hz: float = 300.0) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    amplitude = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)
    return bytes((amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes())


def noise(seconds: float, dbfs: float = -60.0, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 32768 * 10 ** (dbfs / 20), int(seconds * RATE))
    return bytes(x.astype("<i2").tobytes())


def run(pcm: bytes, config: VadConfig | None = None, chunk: int = 320) -> list[object]:
    seg = Segmenter(config or VadConfig())
    out: list[object] = []
    for i in range(0, len(pcm), chunk):
        out.extend(seg.feed(pcm[i : i + chunk]))
    out.extend(seg.flush())
    return out


def test_one_utterance_gives_onset_then_utterance_with_its_bounds() -> None:
    pcm = noise(1.0) + tone(0.8) + noise(1.0, seed=1)
    out = run(pcm)
    assert [type(x) for x in out] == [Onset, Utterance]
    onset, utt = out
    assert isinstance(onset, Onset) and isinstance(utt, Utterance)
    assert onset.at == pytest.approx(1.0, abs=FRAME_S)
    assert utt.start == pytest.approx(1.0, abs=FRAME_S)
    assert utt.end == pytest.approx(1.8, abs=FRAME_S)
    assert not utt.cut
    # pre-roll 200 ms + speech 800 ms + tail 200 ms
    assert len(utt.pcm) / 2 / RATE == pytest.approx(1.2, abs=2 * FRAME_S)


def test_utterance_ends_only_after_min_silence() -> None:
    cfg = VadConfig(min_silence_ms=600)
    short_pause = tone(0.5) + noise(0.4) + tone(0.5) + noise(1.0)
    assert sum(isinstance(x, Utterance) for x in run(noise(0.5) + short_pause, cfg)) == 1
    long_pause = tone(0.5) + noise(0.8) + tone(0.5) + noise(1.0)
    assert sum(isinstance(x, Utterance) for x in run(noise(0.5) + long_pause, cfg)) == 2


def test_clicks_shorter_than_min_speech_are_not_speech() -> None:
    pcm = noise(0.5) + tone(0.06) + noise(1.0) + tone(0.04) + noise(1.0)
    assert run(pcm, VadConfig(min_speech_ms=120)) == []


def syllables(seconds: float) -> bytes:
    """Speech-like: 200 ms voiced, 100 ms quiet (the gaps keep the noise floor down)."""
    one = tone(0.2) + noise(0.1, dbfs=-55)
    return one * round(seconds / 0.3)


def test_long_speech_is_cut_at_the_cap_and_continues() -> None:
    cfg = VadConfig(max_utterance_ms=2000)
    out = run(noise(0.3) + syllables(5.1) + noise(1.0), cfg)
    utterances = [x for x in out if isinstance(x, Utterance)]
    assert len(utterances) == 3
    assert utterances[0].cut and utterances[1].cut and not utterances[2].cut
    assert utterances[0].end - utterances[0].start <= 2.0 + FRAME_S
    assert utterances[0].end - utterances[0].start >= 1.7
    assert sum(isinstance(x, Onset) for x in out) == 3


def test_chunking_does_not_change_the_result() -> None:
    pcm = noise(0.7) + tone(0.6) + noise(1.0) + tone(0.9, dbfs=-30) + noise(0.9)
    by_frame = run(pcm, chunk=320)
    assert run(pcm, chunk=77 * 2) == by_frame
    assert run(pcm, chunk=1600 * 2) == by_frame
    assert sum(isinstance(x, Utterance) for x in by_frame) == 2


def test_steady_hum_above_the_absolute_floor_is_not_speech() -> None:
    # A -35 dBFS hum is above floor_dbfs (-45) but it is the noise floor; speech 15 dB
    # above it is speech, and a continuous tone (no pauses) becomes the floor itself.
    hum = tone(2.0, dbfs=-35, hz=50)
    out = run(hum + syllables(0.9) + hum)
    assert [type(x) for x in out] == [Onset, Utterance]
    utt = out[1]
    assert isinstance(utt, Utterance) and utt.start == pytest.approx(2.0, abs=FRAME_S)
    assert run(tone(8.0, dbfs=-35, hz=50)) == []


def test_flush_hands_over_open_speech_and_drops_unconfirmed() -> None:
    seg = Segmenter(VadConfig())
    assert isinstance(seg.feed(noise(0.3) + tone(0.5))[0], Onset)
    [utt] = seg.flush()
    assert isinstance(utt, Utterance) and utt.end == pytest.approx(0.8, abs=FRAME_S)
    seg2 = Segmenter(VadConfig(min_speech_ms=200))
    assert seg2.feed(noise(0.3) + tone(0.1)) == []
    assert seg2.flush() == []


def test_silence_only_keeps_memory_bounded() -> None:
    seg = Segmenter(VadConfig())
    for _ in range(50):
        assert seg.feed(bytes(16000)) == []
    assert seg.position == pytest.approx(50.0)
    assert len(seg._history) <= 10
