"""The callers' voices and lines: espeak-ng French (through MBROLA fr1 and fr4 when they are
installed, espeak-ng's own male and female variants otherwise), at two speaking rates, on a
telephone line (300-3400 Hz), with or without background noise at a stated SNR.

Everything is generated here from a seed: no recording is downloaded or shipped. Noise is
pink (1/f) or babble-like (speech-shaped noise modulated at syllable rate, several talkers
summed); it plays for the whole call, under the caller's lines and between them, as the
background of a real caller would.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

from events.audio import FRAME_BYTES, SAMPLE_RATE
from voicebot.speech import mbrola_installed, synthesizer

MBROLA_VOICES = ("mb-fr1", "mb-fr4")  # a male and a female French voice
ESPEAK_VOICES = ("fr+m3", "fr+f3")  # espeak-ng's own voice, male and female variants
RATES = (135, 175)  # words per minute (espeak-ng -s): a careful caller and a brisk one
BAND_HZ = (300.0, 3400.0)  # the telephone band
SPEECH_DBFS = -22.0  # active level every line is brought to
SNR_DB = 15.0  # speech active level over the background's level, when there is one
NOISE_SECONDS = 20  # the background loops over this much generated sound


@dataclass(frozen=True)
class Condition:
    """How one call sounds: who speaks, how fast, over what."""

    voice: str
    rate: int
    noise: str | None = None  # None | "pink" | "babble"
    snr_db: float = SNR_DB

    @property
    def label(self) -> str:
        noise = f"+{self.noise}{self.snr_db:g}dB" if self.noise else ""
        return f"{self.voice}@{self.rate}{noise}"


def voices() -> tuple[str, str]:
    """The two caller voices of this machine, chosen when the harness runs."""
    if all(mbrola_installed(v.removeprefix("mb-")) for v in MBROLA_VOICES):
        return MBROLA_VOICES
    return ESPEAK_VOICES


def conditions(voice_pair: tuple[str, str]) -> list[Condition]:
    """The eight conditions (2 voices x 2 rates x clean/noisy, the noise alternating pink and
    babble) in an order where each consecutive pair has one clean and one noisy call with the
    other voice and the other rate: a persona given the pair starting at 0, 2, 4 or 6 is heard
    both ways, and every condition comes up equally often over the personas."""
    a, b = voice_pair
    slow, fast = RATES
    return [
        Condition(a, slow),
        Condition(b, fast, "pink"),
        Condition(b, slow),
        Condition(a, fast, "babble"),
        Condition(a, fast),
        Condition(b, slow, "babble"),
        Condition(b, fast),
        Condition(a, slow, "pink"),
    ]


def seed_of(*parts: str) -> int:
    """A stable seed from names (Python's hash() changes between runs)."""
    return zlib.crc32("/".join(parts).encode())


# --- signal processing (pure numpy) ------------------------------------------------------


def band_limit(x: np.ndarray, band: tuple[float, float] = BAND_HZ) -> np.ndarray:
    """Keep `band` of an 8 kHz signal: an FFT mask with 100 Hz raised-cosine edges."""
    if not len(x):
        return x.astype(np.float64)
    n = len(x)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    low, high = band
    edge = 100.0
    mask = np.clip((freqs - (low - edge / 2)) / edge, 0, 1) * np.clip(
        ((high + edge / 2) - freqs) / edge, 0, 1
    )
    mask = 0.5 - 0.5 * np.cos(np.pi * mask)
    return np.fft.irfft(np.fft.rfft(x.astype(np.float64)) * mask, n)


def active_level_dbfs(x: np.ndarray) -> float:
    """RMS level of the 20 ms frames within 40 dB of the loudest (speech, not its pauses)."""
    frames = len(x) // 160
    if not frames:
        return -120.0
    blocks = x[: frames * 160].astype(np.float64).reshape(frames, 160)
    power = np.mean(blocks**2, axis=1) + 1e-9
    active = power[power >= power.max() / 1e4]
    return float(10 * np.log10(np.mean(active)) - 20 * np.log10(32768))


def scale_to(x: np.ndarray, dbfs: float, level: float | None = None) -> np.ndarray:
    """`x` with its (active) level moved to `dbfs`."""
    current = active_level_dbfs(x) if level is None else level
    return x * 10 ** ((dbfs - current) / 20)


def to_pcm(x: np.ndarray) -> bytes:
    return bytes(np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes())


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise with its spectrum's amplitude shaped by 1/sqrt(f)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def speech_shaped(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with the long-term spectrum of speech: flat to 500 Hz, then -9 dB per octave."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 1.0)
    spectrum *= np.minimum(1.0, (500.0 / freqs) ** 1.5)
    return np.fft.irfft(spectrum, n)


def syllable_envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    """One talker's loudness over time: talk spurts of 1-3 s made of 120-280 ms syllables
    of random strength, separated by pauses of 0.2-0.8 s."""
    env = np.zeros(n)
    t = int(rng.uniform(0, 0.5) * SAMPLE_RATE)
    while t < n:
        spurt_end = t + int(rng.uniform(1.0, 3.0) * SAMPLE_RATE)
        while t < min(spurt_end, n):
            length = int(rng.uniform(0.12, 0.28) * SAMPLE_RATE)
            shape = np.hanning(length) * rng.uniform(0.4, 1.0)
            end = min(t + length, n)
            env[t:end] = np.maximum(env[t:end], shape[: end - t])
            t += int(length * rng.uniform(0.8, 1.1))
        t += int(rng.uniform(0.2, 0.8) * SAMPLE_RATE)
    return env


def babble_noise(n: int, rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    """Several far-off talkers at once, none intelligible: the murmur of a busy room."""
    return sum(
        (speech_shaped(n, rng) * syllable_envelope(n, rng) for _ in range(talkers)),
        np.zeros(n),
    )


class Ambience:
    """The background of one call: 20 ms frames on demand, looping over generated noise."""

    def __init__(self, kind: str, snr_db: float, seed: int, seconds: int = NOISE_SECONDS) -> None:
        rng = np.random.default_rng(seed)
        n = seconds * SAMPLE_RATE
        match kind:
            case "pink":
                noise = pink_noise(n, rng)
            case "babble":
                noise = babble_noise(n, rng)
            case _:
                raise ValueError(f"unknown noise {kind!r} (pink, babble)")
        noise = band_limit(noise)
        rms_dbfs = 10 * np.log10(np.mean(noise**2) + 1e-12) - 20 * np.log10(32768)
        self.pcm = to_pcm(scale_to(noise, SPEECH_DBFS - snr_db, level=rms_dbfs))
        self._pos = 0

    def __call__(self) -> bytes:
        frame = self.pcm[self._pos : self._pos + FRAME_BYTES]
        self._pos = (self._pos + FRAME_BYTES) % len(self.pcm)
        return frame


def ambience(condition: Condition, seed: int) -> Ambience | None:
    if condition.noise is None:
        return None
    return Ambience(condition.noise, condition.snr_db, seed)


@functools.lru_cache(maxsize=1024)
def line_pcm(text: str, voice: str, rate: int) -> bytes:
    """A caller's line: synthesized, on the telephone band, at the speech level. Blocking
    (espeak-ng runs as a process): the caller calls it from a thread."""
    raw = np.frombuffer(synthesizer(voice, rate)(text), "<i2")
    return to_pcm(scale_to(band_limit(raw), SPEECH_DBFS))
