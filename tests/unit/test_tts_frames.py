"""Cutting provider audio into whole 320 B frames and audio.out batches."""

from __future__ import annotations

import random

import numpy as np
import pytest

from events.audio import FRAME_BYTES, SILENCE
from tts_worker.frames import Packer, batch_bytes, frames_of, messages_of, pad_to_frames
from tts_worker.providers.openai import _CHUNK, OPENAI_RATE_HZ
from tts_worker.resample import new_resampler, resample_chunk
from tts_worker.worker import FIRST_MESSAGE_BYTES


def test_pad_to_frames_adds_silence_up_to_a_whole_frame() -> None:
    assert pad_to_frames(b"") == b""
    assert pad_to_frames(b"\x01\x02") == b"\x01\x02" + bytes(FRAME_BYTES - 2)
    assert pad_to_frames(bytes(FRAME_BYTES)) == bytes(FRAME_BYTES)
    assert len(pad_to_frames(bytes(FRAME_BYTES + 1))) == 2 * FRAME_BYTES


def test_frames_are_exactly_320_bytes() -> None:
    frames = frames_of(bytes(range(256)) * 10)
    assert [len(f) for f in frames] == [FRAME_BYTES] * 8
    assert b"".join(frames)[:2560] == bytes(range(256)) * 10


@pytest.mark.parametrize(("ms", "expected"), [(20, 320), (100, 1600), (110, 1600), (5, 320)])
def test_batch_is_a_whole_number_of_frames(ms: int, expected: int) -> None:
    assert batch_bytes(ms) == expected


def test_packer_rejects_a_batch_that_is_not_whole_frames() -> None:
    with pytest.raises(ValueError, match="whole number"):
        Packer(1000)


@pytest.mark.parametrize("seed", range(20))
def test_packer_carries_the_remainder_across_chunks(seed: int) -> None:
    rnd = random.Random(seed)
    signal = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 20_000)))
    packer = Packer(1600)
    messages: list[bytes] = []
    pos = 0
    while pos < len(signal):
        step = rnd.randrange(1, 3000)  # odd sizes included
        messages += packer.push(signal[pos : pos + step])
        pos += step
    last = packer.finish()
    assert all(len(m) == 1600 for m in messages)
    assert 0 < len(last) <= 1600 and len(last) % FRAME_BYTES == 0
    # Nothing lost, nothing reordered, no padding anywhere but the tail.
    assert b"".join([*messages, last]) == pad_to_frames(signal)


def test_packer_keeps_a_last_message_when_the_audio_ends_on_a_batch() -> None:
    packer = Packer(1600)
    assert len(packer.push(bytes(3200))) == 1
    assert packer.finish() == bytes(1600)


def test_an_utterance_with_no_audio_still_has_a_last_frame() -> None:
    assert Packer(1600).finish() == SILENCE


def test_messages_of_a_cached_phrase() -> None:
    messages = messages_of(bytes(FRAME_BYTES * 12), 5 * FRAME_BYTES)
    assert [len(m) // FRAME_BYTES for m in messages] == [5, 5, 2]


def test_a_streamed_utterance_starts_with_a_small_first_message() -> None:
    packer = Packer(5 * FRAME_BYTES, first=2 * FRAME_BYTES)
    assert packer.push(bytes(FRAME_BYTES + 7)) == []  # not yet the edge's prebuffer
    first = packer.push(bytes(2 * FRAME_BYTES))  # 3 frames and 7 bytes: the first 2 go at once
    assert [len(m) for m in first] == [2 * FRAME_BYTES]
    assert packer.push(bytes(5 * FRAME_BYTES)) == [bytes(5 * FRAME_BYTES)]  # then batches
    assert len(packer.finish()) == 2 * FRAME_BYTES  # the frame and 7 bytes left, padded, last


def test_a_cached_phrase_is_cut_like_a_streamed_one() -> None:
    packer = Packer(5 * FRAME_BYTES, first=2 * FRAME_BYTES)
    out = packer.push(bytes(12 * FRAME_BYTES))
    assert [len(m) // FRAME_BYTES for m in [*out, packer.finish()]] == [2, 5, 5]


@pytest.mark.parametrize("seed", range(20))
def test_message_boundaries_do_not_depend_on_the_providers_chunks(seed: int) -> None:
    # A new owner re-speaks an utterance from message 0 and the edge keeps the messages it
    # already has by number: message k must hold the same audio in both renditions.
    rng = random.Random(seed)
    pcm = rng.randbytes(rng.randrange(1, 60) * FRAME_BYTES + rng.randrange(0, 2) * 77)

    def rendition() -> list[bytes]:
        packer = Packer(5 * FRAME_BYTES, first=2 * FRAME_BYTES)
        messages, at = [], 0
        while at < len(pcm):
            step = rng.randrange(1, 4 * FRAME_BYTES)
            messages += packer.push(pcm[at : at + step])
            at += step
        return [*messages, packer.finish()]

    assert rendition() == rendition()


def test_a_streamed_answer_starts_with_80_ms_from_the_providers_first_chunk() -> None:
    # The edge plays from 40 ms queued; the second message comes a provider chunk (33 ms at 3x
    # real time) later. The first message must hold more than both, and still leave with the
    # first chunk: a bigger one would wait for the second (the resampler keeps some back).
    assert FIRST_MESSAGE_BYTES >= 4 * FRAME_BYTES
    t = np.arange(_CHUNK // 2) / OPENAI_RATE_HZ
    chunk = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    packer = Packer(batch_bytes(100), first=FIRST_MESSAGE_BYTES)
    first = packer.push(resample_chunk(new_resampler(), chunk, OPENAI_RATE_HZ))
    assert [len(m) for m in first] == [FIRST_MESSAGE_BYTES]


def test_a_first_message_that_would_leave_nothing_for_last_keeps_a_frame() -> None:
    packer = Packer(5 * FRAME_BYTES, first=2 * FRAME_BYTES)
    assert [len(m) // FRAME_BYTES for m in packer.push(bytes(3 * FRAME_BYTES))] == [2]
    assert len(packer.finish()) == FRAME_BYTES
