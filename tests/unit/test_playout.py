"""The per-call jitter queue: one frame per tick, utterance notices, flush, stalls."""

from __future__ import annotations

from edge.playout import Notice, Playout
from edge.prebuffer import Prebuffer
from events.audio import FRAME_BYTES, SILENCE


def frames(n: int, fill: int = 1) -> bytes:
    return bytes([fill]) * (FRAME_BYTES * n)


def drain(p: Playout, ticks: int) -> tuple[list[bytes], list[Notice]]:
    out: list[bytes] = []
    notices: list[Notice] = []
    for _ in range(ticks):
        frame, ns = p.next_frame()
        out.append(frame)
        notices.extend(ns)
    return out, notices


def test_silence_when_idle_is_not_an_underrun() -> None:
    p = Playout()
    out, notices = drain(p, 5)
    assert out == [SILENCE] * 5 and notices == [] and p.underruns == 0


def test_utterance_plays_frame_by_frame_with_notices() -> None:
    p = Playout(prebuffer=2)
    assert p.push("u1", frames(3), last=True) == 3
    out, notices = drain(p, 5)
    assert out[:3] == [frames(1)] * 3 and out[3:] == [SILENCE] * 2
    assert notices == [Notice("started", "u1", 0), Notice("finished", "u1", 3)]
    assert p.idle


def test_prebuffer_waits_for_enough_frames_unless_last() -> None:
    p = Playout(prebuffer=3)
    p.push("u1", frames(1), last=False)
    out, notices = drain(p, 2)
    assert out == [SILENCE, SILENCE] and notices == []
    p.push("u1", frames(2), last=False)
    frame, notices = p.next_frame()
    assert frame == frames(1) and notices == [Notice("started", "u1", 0)]


def test_underrun_mid_utterance_is_silence_and_counted() -> None:
    p = Playout(prebuffer=1)
    p.push("u1", frames(1), last=False)
    out, _ = drain(p, 3)
    assert out == [frames(1), SILENCE, SILENCE]
    assert p.underruns == 2
    p.push("u1", frames(1, 2), last=True)
    frame, notices = p.next_frame()
    assert frame == frames(1, 2) and notices == [Notice("finished", "u1", 2)]
    assert p.prebuffer.gaps == 1  # two silent ticks, one gap


def test_a_gap_deepens_the_shared_prebuffer_for_every_call() -> None:
    shared = Prebuffer(1, 4, step_frames=2, clock=lambda: 0.0)
    first, second = Playout(prebuffer=shared), Playout(prebuffer=shared)
    first.push("u1", frames(1), last=False)
    drain(first, 3)
    assert (shared.gaps, shared.frames) == (1, 3)
    second.push("u2", frames(2), last=False)
    out, notices = drain(second, 2)
    assert out == [SILENCE, SILENCE] and notices == []  # 2 frames no longer start it
    second.push("u2", frames(1), last=False)
    frame, notices = second.next_frame()
    assert frame == frames(1) and notices == [Notice("started", "u2", 0)]


def test_utterances_play_in_order() -> None:
    p = Playout(prebuffer=1)
    p.push("a", frames(1, 1), last=False)
    p.push("b", frames(1, 2), last=True)
    p.push("a", frames(1, 3), last=True)
    out, _ = drain(p, 3)
    assert out == [frames(1, 1), frames(1, 3), frames(1, 2)]


def test_flush_one_utterance_and_its_late_audio() -> None:
    p = Playout(prebuffer=1)
    p.push("a", frames(5, 1), last=False)
    p.push("b", frames(2, 2), last=True)
    drain(p, 2)
    notices, dropped = p.flush("a")
    assert dropped == 3 and notices == [Notice("interrupted", "a", 2, "flush")]
    assert p.push("a", frames(4), last=True) == 0  # the TTS was still streaming it
    assert p.late_frames == 4
    out, _ = drain(p, 3)
    assert out == [frames(1, 2), frames(1, 2), SILENCE]


def test_flush_all_drops_everything_at_once() -> None:
    p = Playout(prebuffer=1)
    p.push("a", frames(5), last=True)
    p.push("b", frames(5), last=True)
    p.next_frame()
    notices, dropped = p.flush(None)
    assert dropped == 9 and [n.utterance_id for n in notices] == ["a", "b"]
    assert p.next_frame() == (SILENCE, []) and p.idle


def test_flush_before_the_audio_arrives() -> None:
    p = Playout()
    notices, dropped = p.flush("later")
    assert notices == [] and dropped == 0
    assert p.push("later", frames(2), last=True) == 0


def test_expected_utterance_holds_its_place() -> None:
    p = Playout(prebuffer=1)
    p.expect("goodbye")
    assert not p.idle  # a hang-up waits for it
    p.push("goodbye", frames(1), last=True)
    _, notices = drain(p, 1)
    assert [n.state for n in notices] == ["started", "finished"] and p.idle


def test_stalled_utterance_is_dropped_not_blocking() -> None:
    p = Playout(prebuffer=1, stall_ticks=3)
    p.push("dead", frames(1), last=False)
    p.push("next", frames(1, 2), last=True)
    out, notices = drain(p, 6)
    assert Notice("interrupted", "dead", 1, "stalled") in notices
    assert frames(1, 2) in out


def test_queue_is_bounded() -> None:
    p = Playout(max_frames=4)
    assert p.push("a", frames(10), last=True) == 4
    assert p.overflow_frames == 6 and p.queued_frames == 4


def test_empty_last_message_finishes_the_utterance() -> None:
    p = Playout(prebuffer=1)
    p.push("a", frames(1), last=False)
    p.next_frame()
    p.push("a", b"", last=True)
    frame, notices = p.next_frame()
    assert frame == SILENCE and notices == [Notice("finished", "a", 1)]


def test_a_re_spoken_start_is_not_played_twice() -> None:
    """A new TTS owner re-speaks a partly published utterance from seq 0: the frames the edge
    already holds (or played) are skipped, the rest follows on."""
    p = Playout(prebuffer=1)
    p.push("u1", frames(2, 1), last=False, seq=0)
    p.push("u1", frames(2, 2), last=False, seq=1)
    played, _ = drain(p, 3)  # the old owner's audio plays, then it dies
    assert p.push("u1", frames(2, 1), last=False, seq=0) == 0  # the new owner, from the start
    assert p.push("u1", frames(2, 2), last=False, seq=1) == 0
    assert p.push("u1", frames(2, 3), last=True, seq=2) == 2
    out, notices = drain(p, 4)
    heard = [f for f in played + out if f != SILENCE]
    assert heard == [frames(1, 1)] * 2 + [frames(1, 2)] * 2 + [frames(1, 3)] * 2
    assert notices[-1] == Notice("finished", "u1", 6)
    assert p.repeated_frames == 4


def test_a_re_spoken_rendition_that_ends_sooner_still_ends_the_utterance() -> None:
    p = Playout(prebuffer=1)
    p.push("u1", frames(2), last=False, seq=0)
    p.push("u1", frames(2), last=False, seq=1)
    p.push("u1", frames(1), last=True, seq=1)  # the new owner's rendition ends here
    _, notices = drain(p, 5)
    assert notices[-1] == Notice("finished", "u1", 4)
    assert p.idle
