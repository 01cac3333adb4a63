"""Caller audio into audio.in messages: batches, except where a recogniser decides."""

from __future__ import annotations

from edge.inbound import InboundBatcher

F = 320  # one 20 ms frame


def feed(b: InboundBatcher, n: int, t0: float, **flags: bool) -> list[int]:
    """Add n frames from call-audio time t0; the sizes (in frames) of the batches that went."""
    out = []
    for i in range(n):
        batch = b.add(bytes(F), capture_ts=100.0 + t0 + i * 0.02, audio_t=t0 + i * 0.02, **flags)
        if batch is not None:
            out.append(len(batch.pcm) // F)
    return out


def test_audio_goes_in_batches_numbered_and_stamped() -> None:
    b = InboundBatcher(5 * F, max_age_ticks=6)
    sent = []
    for i in range(12):
        batch = b.add(bytes(F), capture_ts=50.0 + i * 0.02, audio_t=i * 0.02)
        if batch is not None:
            sent.append(batch)
    assert [len(x.pcm) // F for x in sent] == [5, 5]
    assert [x.seq for x in sent] == [0, 1]
    assert [round(x.audio_t, 2) for x in sent] == [0.0, 0.1]
    assert [round(x.capture_ts, 2) for x in sent] == [50.0, 50.1]
    assert b.pending == 2 * F


def test_speech_onset_goes_at_once() -> None:
    b = InboundBatcher(5 * F, max_age_ticks=6)
    assert feed(b, 2, 0.0) == []
    assert feed(b, 1, 0.04, onset=True) == [3]


def test_the_quiet_after_speech_goes_frame_by_frame_for_a_second() -> None:
    b = InboundBatcher(5 * F, max_age_ticks=6, tail_s=1.0)
    assert feed(b, 3, 0.0) == []
    # The first quiet frame after speech: the end of the line is near, every frame goes.
    assert feed(b, 1, 0.06, quiet_after_speech=True) == [4]
    assert feed(b, 49, 0.08) == [1] * 49  # up to 1 s after that quiet frame
    assert feed(b, 10, 1.2) == [5, 5]  # then batches again


def test_a_batch_the_caller_stopped_feeding_goes_after_its_age() -> None:
    b = InboundBatcher(5 * F, max_age_ticks=6)
    feed(b, 2, 0.0)
    assert [b.tick() for _ in range(6)] == [None] * 6
    last = b.tick()
    assert last is not None and len(last.pcm) == 2 * F
    assert b.tick() is None and b.flush() is None
