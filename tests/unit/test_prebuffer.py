"""The edge's shared prebuffer: deeper at each gap, back to its base after a quiet while."""

from __future__ import annotations

from edge.prebuffer import Prebuffer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_fixed_prebuffer_counts_gaps_and_stays() -> None:
    p = Prebuffer(2)
    p.gap()
    p.gap()
    assert (p.adaptive, p.gaps, p.frames) == (False, 2, 2)


def test_each_gap_deepens_it_by_a_step_up_to_the_most() -> None:
    p = Prebuffer(2, 8, step_frames=2, clock=Clock())
    depths = []
    for _ in range(4):
        p.gap()
        depths.append(p.frames)
    assert depths == [4, 6, 8, 8]


def test_it_holds_after_the_last_gap_then_shrinks_a_frame_at_a_time() -> None:
    clock = Clock()
    p = Prebuffer(2, 8, step_frames=2, hold_s=10.0, shrink_every_s=1.0, clock=clock)
    p.gap()
    p.gap()
    assert p.frames == 6
    clock.now += 9.9
    assert p.frames == 6  # still held
    clock.now += 0.1
    assert p.frames == 5
    clock.now += 1.0
    assert p.frames == 4
    clock.now += 60.0
    assert p.frames == 2  # never below the base


def test_a_gap_while_it_shrinks_deepens_it_from_where_it_is() -> None:
    clock = Clock()
    p = Prebuffer(2, 10, step_frames=2, hold_s=10.0, shrink_every_s=1.0, clock=clock)
    for _ in range(3):
        p.gap()
    assert p.frames == 8
    clock.now += 12.0  # three frames shrunk
    assert p.frames == 5
    p.gap()
    assert p.frames == 7
    clock.now += 9.0
    assert p.frames == 7  # held again from the new gap
