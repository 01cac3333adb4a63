"""The pure parts of fault handling: the edge's silence guard, fencing, edge liveness."""

from __future__ import annotations

import pytest

from edge.silence_guard import GuardPolicy, SilenceGuard
from events.fence import Fence
from events.liveness import MISSES, EdgeWatch
from events.schemas import EdgeAlive

POLICY = GuardPolicy(hold_after_s=2.0, unavailable_after_s=12.0)


def dues(guard: SilenceGuard, start: float, end: float, step: float = 0.02) -> list[tuple]:
    """What the guard asks for, tick by tick, from `start` to `end` (rounded times)."""
    out = []
    for i in range(round((end - start) / step)):
        t = round(start + i * step, 6)
        action = guard.due(t)
        if action is not None:
            out.append((round(t, 2), action))
    return out


def test_a_silent_pipeline_gets_holds_then_the_unavailable_phrase() -> None:
    guard = SilenceGuard(POLICY, now=0.0)
    got = dues(guard, 0.0, 2.5)
    assert got == [(2.0, "hold")]
    guard.local_started()
    assert guard.due(2.5) is None  # nothing over our own phrase
    guard.local_ended(3.5)
    got = dues(guard, 3.5, 13.0)
    assert got[0] == (5.5, "hold")  # hold_after_s after the hold phrase ended
    assert got[-1] == (12.0, "unavailable")
    assert guard.due(20.0) is None  # given up: once


def test_the_welcome_playing_means_nothing_is_owed() -> None:
    guard = SilenceGuard(POLICY, now=0.0)
    guard.pipeline_started()
    guard.pipeline_ended(3.0)
    assert dues(guard, 3.0, 30.0) == []  # the caller's turn: the bot waits, it owes nothing


def test_the_end_of_a_caller_line_is_owed_an_answer() -> None:
    guard = SilenceGuard(POLICY, now=0.0)
    guard.pipeline_started()
    guard.pipeline_ended(3.0)
    guard.caller_started()
    assert guard.due(6.0) is None  # the caller is talking
    guard.caller_stopped(7.0)
    assert dues(guard, 7.0, 9.1) == [(9.0, "hold")]


def test_an_answer_in_time_clears_what_is_owed() -> None:
    guard = SilenceGuard(POLICY, now=0.0)
    guard.pipeline_started()
    guard.pipeline_ended(3.0)
    guard.caller_stopped(5.0)
    guard.pipeline_started()  # the answer plays after 0.8 s
    guard.pipeline_ended(8.0)
    assert dues(guard, 8.0, 30.0) == []


def test_a_decision_to_say_nothing_clears_it_and_other_decisions_do_not() -> None:
    guard = SilenceGuard(POLICY, now=0.0)
    guard.pipeline_started()
    guard.pipeline_ended(1.0)
    guard.caller_stopped(2.0)  # a keypad digit, say
    guard.decided("speech_started", says=False)
    assert guard.owed
    guard.decided("transcript", says=True)
    assert guard.owed  # the answer is coming: owed until it plays
    guard.decided("dtmf", says=False)  # collecting digits: the bot rightly stays quiet
    assert not guard.owed
    assert dues(guard, 2.0, 30.0) == []


def test_talking_over_the_bot_is_not_a_question() -> None:
    guard = SilenceGuard(POLICY, now=0.0)
    guard.pipeline_started()
    guard.caller_started()
    guard.caller_stopped(1.0)  # "hmm" over a prompt that goes on
    guard.pipeline_ended(4.0)
    assert dues(guard, 4.0, 30.0) == []


def test_the_caller_speaking_again_keeps_the_unavailable_clock() -> None:
    guard = SilenceGuard(POLICY, now=0.0)
    guard.pipeline_started()
    guard.pipeline_ended(1.0)
    for t in range(2, 12, 2):  # a caller who says something every 2 s, never answered
        guard.caller_started()
        guard.caller_stopped(float(t) + 0.5)
        assert guard.due(float(t) + 1.0) is None
    assert dues(guard, 12.0, 14.6)[-1] == (14.5, "unavailable")  # 12 s after the first line


def test_fence_drops_older_epochs_and_lets_epoch_zero_pass() -> None:
    fence = Fence()
    assert fence.allows("brain", 1)
    fence.claimed("brain", 3)
    assert not fence.allows("brain", 2)
    assert fence.allows("brain", 3) and fence.allows("brain", 4)
    assert not fence.allows("brain", 3)  # 4 was seen: 3 is stale now
    assert fence.allows("brain", 0)  # not from a claimed owner (edge, replay)
    assert fence.allows("tts_worker", 1)  # kinds are fenced apart
    assert fence.dropped == 2


def beat(edge: str, ts: float, *calls: str) -> EdgeAlive:
    return EdgeAlive(edge=edge, ts=ts, calls=calls)


def test_a_call_its_edge_stops_naming_is_released_after_misses() -> None:
    watch = EdgeWatch(bound_s=5.0)
    watch.connected(0.0)
    watch.beat(beat("e1", 100.0, "c1"), 0.5)
    watch.hold("c1", "e1", 0.6)
    for i in range(6):
        watch.beat(beat("e1", 101.0 + i, "c1"), 1.0 + i)
    assert watch.orphans(6.5) == {}
    for i in range(MISSES):
        assert watch.orphans(7.0 + i) == {}
        watch.beat(beat("e1", 107.0 + i, "other"), 7.0 + i)
    assert watch.orphans(7.0 + MISSES) == {"c1": "edge e1 no longer holds the call"}
    watch.release("c1")
    assert watch.orphans(20.0) == {}


def test_a_silent_edge_releases_its_calls_but_not_before_we_are_connected_long_enough() -> None:
    watch = EdgeWatch(bound_s=5.0)
    watch.connected(0.0)
    watch.beat(beat("e1", 100.0, "c1"), 1.0)
    watch.hold("c1", "e1", 1.0)
    assert watch.orphans(5.9) == {}
    assert watch.orphans(6.5) == {"c1": "edge e1 silent for 5.5 s"}
    watch.disconnected()
    assert watch.orphans(60.0) == {}  # we hear nobody: that says nothing about the edge
    watch.connected(60.0)
    assert watch.orphans(64.0) == {}  # not connected for a whole bound yet
    assert "c1" in watch.orphans(65.5)


@pytest.mark.parametrize("edge", ["", "unknown-edge"])
def test_calls_of_an_edge_never_heard(edge: str) -> None:
    watch = EdgeWatch(bound_s=5.0)
    watch.connected(0.0)
    watch.hold("c1", edge, 10.0)
    assert watch.orphans(14.0) == {}
    expected = {} if not edge else {"c1": f"edge {edge} not heard for 5 s"}
    assert watch.orphans(15.5) == expected
