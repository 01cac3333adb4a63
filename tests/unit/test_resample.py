"""Resampling to 8 kHz: pitch and duration kept, chunked streams continuous."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest

from events.audio import SAMPLE_RATE
from tts_worker.providers.espeak import ESPEAK_RATE_HZ, EspeakProvider, synthesize
from tts_worker.resample import AudioPool, resample_all


def tone(freq: float, seconds: float, rate: int, amplitude: float = 8000) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16).tobytes()


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.int32)


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(x))


def zero_crossing_hz(x: np.ndarray) -> float:
    crossings = np.count_nonzero(np.diff(np.signbit(x[100:-100])))
    return crossings / 2 / ((len(x) - 200) / SAMPLE_RATE)


@pytest.fixture(scope="module")
def pool() -> Iterator[AudioPool]:
    shared = AudioPool(2)
    yield shared
    shared.shutdown()


@pytest.mark.parametrize("rate", [24000, ESPEAK_RATE_HZ, 16000])
def test_pitch_and_duration_are_kept(rate: int) -> None:
    out = samples(resample_all(tone(1000, 1.0, rate), rate))
    assert abs(len(out) - SAMPLE_RATE) <= 2  # same duration, well within one 160-sample frame
    assert abs(peak_hz(out) - 1000) < 2
    assert abs(zero_crossing_hz(out) - 1000) < 3


async def test_a_stream_in_odd_chunks_equals_the_signal_resampled_at_once(pool: AudioPool) -> None:
    signal = tone(1000, 1.0, 24000)
    stream = pool.stream(24000)
    rnd = random.Random(7)
    out, pos, edges = b"", 0, []
    while pos < len(signal):
        step = rnd.randrange(1, 3001)  # odd byte counts split samples in two
        out += await stream.feed(signal[pos : pos + step])
        edges.append(len(out) // 2)
        pos += step
    out += await stream.finish()
    assert out == resample_all(signal, 24000)
    x = samples(out)
    jumps = np.abs(np.diff(x))
    inside = jumps[40:-40].max()
    assert max(jumps[e - 1] for e in edges if 40 < e < len(x) - 40) <= inside
    assert inside < 2 * 8000 * np.sin(np.pi * 1000 / SAMPLE_RATE) + 50  # a sine's own slope


async def test_a_closed_stream_frees_its_state(pool: AudioPool) -> None:
    stream = pool.stream(24000)
    await stream.feed(tone(1000, 0.1, 24000))
    stream.close()
    again = pool.stream(24000)
    out = await again.feed(tone(1000, 0.1, 24000)) + await again.finish()
    assert abs(len(out) // 2 - 800) <= 2


def test_espeak_speaks_french_at_22050_hz() -> None:
    pcm = samples(synthesize("Bonjour, bienvenue au S A V.", "fr", 160))
    assert 0.8 * ESPEAK_RATE_HZ < len(pcm) < 4 * ESPEAK_RATE_HZ
    assert np.abs(pcm).max() > 1000


async def test_espeak_provider_yields_8_khz_from_the_pool(pool: AudioPool) -> None:
    provider = EspeakProvider(pool, voice="fr", rate=160)
    pcm = b"".join([chunk async for chunk in provider.speak("Merci pour votre appel.")])
    native = b"".join([chunk async for chunk in provider.speak_native("Merci pour votre appel.")])
    assert abs(len(pcm) / SAMPLE_RATE - len(native) / ESPEAK_RATE_HZ) < 0.01
