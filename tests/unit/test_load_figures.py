"""The load caller's figures (voicebot/load_figures.py), as bench/loadcaller.c defines them."""

from __future__ import annotations

import pytest

from voicebot.caller import Step
from voicebot.load_figures import (
    ProviderDelays,
    Turn,
    breakdown,
    call_pacing,
    percentile,
    pipeline_added,
    summarise_latency,
    summarise_pacing,
)
from voicebot.load_script import SILENCE_MESSAGE, prepare, spoken_texts

P = 0.020


def grid(n: int, start: float = 0.0, jitter: dict[int, float] | None = None) -> list[float]:
    jitter = jitter or {}
    return [start + i * P + jitter.get(i, 0.0) for i in range(n)]


def test_a_perfect_stream_is_late_by_nothing_and_misses_nothing() -> None:
    c = call_pacing(grid(500, start=0.005), 0.0, 10.0)
    assert c.frames == 500 and c.expected == 500 and c.deficit == 0
    assert max(c.lateness) < 1e-9 and c.gaps == 0 and c.bursts == 0


def test_a_late_frame_then_a_burst_is_a_gap_and_a_burst_not_a_deficit() -> None:
    # Frame 10 comes 16 ms late; frame 11 on time, 4 ms after it: a hole then two together.
    c = call_pacing(grid(100, jitter={10: 0.016}), 0.0, 2.0)
    assert c.gaps == 1 and c.bursts == 1 and c.deficit == 0
    assert max(c.lateness) == pytest.approx(0.016)


def test_missing_frames_and_a_stall_at_the_end_are_a_deficit() -> None:
    arrivals = [t for i, t in enumerate(grid(100)) if i not in (40, 41)]  # two frames lost
    c = call_pacing(arrivals, 0.0, 2.5)  # and nothing came for the last 0.52 s
    assert c.gaps == 1
    assert c.deficit == 2 + 25  # 2 lost; 0.52 s after the last frame is 26 periods, 1 its own


def test_summary_pools_calls_and_never_goes_negative() -> None:
    ahead = call_pacing(sorted([*grid(100), 0.501]), 0.0, 2.0)  # a frame too many: -1
    s = summarise_pacing([ahead, call_pacing(grid(100, jitter={50: 0.004}), 0.0, 2.0)])
    assert s.calls == 2 and s.deficit_frames == 0 and s.deficit_pct == 0.0
    assert s.lateness_max_ms == pytest.approx(4.0)
    assert s.lateness_p50_ms == 0.0


def test_percentile_takes_the_index_the_c_caller_takes() -> None:
    values = [float(i) for i in range(100)]
    assert percentile(values, 0.99) == 99.0 and percentile(values, 0.5) == 50.0
    assert percentile([], 0.5) is None
    assert summarise_latency([0.2, 0.1]).p50_ms == 200.0


def test_the_wait_splits_at_the_final_and_the_say() -> None:
    # Line ends at 10.0; final 10.31; say 10.47 (a phrase); first voiced frame 10.50.
    b = breakdown(10.0, 10.50, [9.0, 10.31], [(8.0, "text"), (10.47, "phrase")])
    assert b.answer == "phrase"
    assert (b.stt_s, b.brain_s, b.out_s) == pytest.approx((0.31, 0.16, 0.03))
    # The bot spoke before any say of this turn (the edge's hold phrase): unknown.
    assert breakdown(10.0, 10.2, [10.1], [(10.3, "phrase")]).answer == ""


def test_pipeline_added_subtracts_what_the_providers_took() -> None:
    delays = ProviderDelays(stt_s=0.3, llm_s=0.15, tts_s=0.2)
    turns = [
        Turn("c", 0, 0.05, ()),  # the opening: no provider on its path
        Turn("c", 1, 0.47, (), answer="phrase"),
        Turn("c", 2, 0.68, (), answer="text"),
        Turn("c", 3, 0.9, ()),  # not attributed: left out
    ]
    assert pipeline_added(turns, delays) == pytest.approx([0.02, 0.03])


def test_a_script_is_prepared_once_as_frames_keyed_or_synthesised() -> None:
    steps = [Step("say", "Bonjour."), Step("dtmf", "1"), Step("say", "Internet.")]
    calls: list[str] = []

    def synth(text: str) -> bytes:
        calls.append(text)
        return bytes(320) + b"\x00\x40" * 800 + bytes(100)  # quiet, 0.1 s of sound, quiet tail

    prepared = prepare(steps, synth=synth, keyed=False)
    assert calls == ["Bonjour.", "Internet."]
    line = prepared[0].line
    assert line is not None and all(len(m) == 323 for m in line.messages)
    assert line.last_voiced == 5  # the speech ends in the frame the sound ends in
    keyed = prepare(steps, synth=None, keyed=True)
    assert keyed[2].line is not None and keyed[2].line.messages[0] != SILENCE_MESSAGE
    assert spoken_texts(steps) == ["Bonjour.", "Internet."]
