"""The ticker's deadline arithmetic: absolute grid, no drift, skip instead of burst."""

from __future__ import annotations

import asyncio

import pytest

from edge.pacer import PERIOD_S, Ticker, next_deadline


def test_on_time_tick_moves_one_period() -> None:
    assert next_deadline(1.0, 1.0001) == pytest.approx((1.02, 0))


def test_late_by_less_than_a_period_keeps_the_grid() -> None:
    nxt, skipped = next_deadline(1.0, 1.019)
    assert nxt == pytest.approx(1.02) and skipped == 0


@pytest.mark.parametrize(("late", "skipped"), [(0.020, 1), (0.031, 1), (0.045, 2), (1.0, 50)])
def test_late_by_a_period_or_more_skips_ahead(late: float, skipped: int) -> None:
    nxt, got = next_deadline(1.0, 1.0 + late)
    assert got == skipped
    assert nxt > 1.0 + late  # the next deadline is in the future: no burst
    assert nxt - (1.0 + late) <= PERIOD_S + 1e-9
    steps = (nxt - 1.0) / PERIOD_S
    assert steps == pytest.approx(round(steps))  # still on the original grid


def test_no_drift_over_a_long_run() -> None:
    deadline = 0.0
    for _ in range(100_000):
        deadline, skipped = next_deadline(deadline, deadline + 0.0019)  # always ~2 ms late
        assert skipped == 0
    assert deadline == pytest.approx(100_000 * PERIOD_S, abs=1e-6)


def test_exact_grid_point_is_not_reused() -> None:
    nxt, skipped = next_deadline(0.1, 0.1 + 3 * PERIOD_S)
    assert nxt > 0.1 + 3 * PERIOD_S and skipped == 3


class Counting:
    def __init__(self) -> None:
        self.ticks = 0
        self.five = asyncio.Event()

    def tick(self) -> bool:
        self.ticks += 1
        if self.ticks >= 5:
            self.five.set()
        return True


class Broken:
    def tick(self) -> bool:
        raise RuntimeError("boom")


@pytest.mark.timeout(5)
async def test_ticker_serves_every_client_and_drops_a_broken_one() -> None:
    seen: list[tuple[float, int, int]] = []
    ticker = Ticker(period=0.005, on_tick=lambda late, n, sk: seen.append((late, n, sk)))
    good, bad = Counting(), Broken()
    ticker.add(good)
    ticker.add(bad)
    ticker.start()
    try:
        await asyncio.wait_for(good.five.wait(), 2)
    finally:
        ticker.stop()
    assert len(ticker) == 1  # the broken client was removed after its first failure
    assert all(n == 1 for _, n, _ in seen)
    assert all(late >= 0 for late, _, _ in seen)
