"""Caller audio into audio.in messages: batches, except where a recogniser decides."""

from __future__ import annotations

from edge.inbound import InboundBatcher

F = 320  # one 20 ms frame


def feed(
    b: InboundBatcher, n: int, t0: float, *, quiet_from: float | None = None, **flags: bool
) -> list[int]:
    """Add n frames from call-audio time t0 (quiet after speech since `quiet_from`, if given);
    the sizes (in frames) of the batches that went."""
    out = []
    for i in range(n):
        t = t0 + i * 0.02
        quiet = 0.0 if quiet_from is None else t + 0.02 - quiet_from
        batch = b.add(
            bytes(F), capture_ts=100.0 + t, audio_t=t, quiet_after_speech_s=quiet, **flags
        )
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


def test_the_end_of_a_line_goes_frame_by_frame_from_120_ms_to_1_1_s_of_quiet() -> None:
    b = InboundBatcher(5 * F, max_age_ticks=6)
    assert feed(b, 3, 0.0) == []  # the line's last 60 ms of speech
    # Quiet from 0.06 s: its first 100 ms decide nothing and go in batches; from 120 ms of
    # quiet (where the recognisers are about to decide) every frame goes at once...
    assert feed(b, 5, 0.06, quiet_from=0.06) == [5]
    assert feed(b, 1, 0.16, quiet_from=0.06) == [4]  # 120 ms of quiet: the batch goes
    assert feed(b, 49, 0.18, quiet_from=0.06) == [1] * 49  # ... up to 1.1 s of quiet
    assert feed(b, 10, 1.16, quiet_from=0.06) == [5, 5]  # then batches again


def test_a_pause_between_words_does_not_go_frame_by_frame() -> None:
    b = InboundBatcher(5 * F, max_age_ticks=6)
    sent = feed(b, 3, 0.0)
    sent += feed(b, 5, 0.06, quiet_from=0.06)  # 100 ms between two words
    sent += feed(b, 12, 0.16)  # the next word
    assert sent == [5, 5, 5, 5]  # 20 frames, none alone


def test_a_batch_the_caller_stopped_feeding_goes_after_its_age() -> None:
    b = InboundBatcher(5 * F, max_age_ticks=6)
    feed(b, 2, 0.0)
    assert [b.tick() for _ in range(6)] == [None] * 6
    last = b.tick()
    assert last is not None and len(last.pcm) == 2 * F
    assert b.tick() is None and b.flush() is None
