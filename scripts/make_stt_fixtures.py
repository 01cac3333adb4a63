"""Make the offline-STT test fixtures once: French phrases spoken by MBROLA voices, 8 kHz mono.

Run by hand, the WAV files are checked in (tests never synthesise). Needs espeak-ng and the
MBROLA French voices: `apt-get install espeak-ng mbrola mbrola-fr1 mbrola-fr4` (Debian contrib /
non-free; their licence forbids selling them inside a product, fine for tests). Whisper
recognises espeak-ng's own French voice badly (WER ~78%), MBROLA's far better (~21%).

    .venv/bin/python scripts/make_stt_fixtures.py [out_dir]
"""

from __future__ import annotations

import io
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
OUT = PROJECT / "tests" / "fixtures" / "stt"
SAMPLE_CALL = PROJECT / "assets" / "sample_call"  # `voicebot call`'s default caller
RATE = 8000
LEAD_S = 0.2
TAIL_S = 0.3

PHRASES = {
    "oui": ("mb-fr1", "oui"),
    "non": ("mb-fr1", "non"),
    "internet": ("mb-fr1", "internet"),
    "mobile": ("mb-fr1", "mobile"),
    "phone": ("mb-fr1", "zéro six douze trente-quatre cinquante-six soixante-dix-huit"),
    "name": ("mb-fr1", "Pierre Dupont"),
}


# The caller's lines of the original README's sample dialog (assets/sample_call/N.wav). The
# phone number is said "zéro six douze ... soixante dix-huit" after "mon numéro est le":
# Whisper base hears the plain "06 12 34 56 78" of espeak as "... 56 68" with this voice.
SAMPLE_LINES = {
    "1": "Bonjour, j'ai un problème avec ma connexion.",
    "2": "Pierre Dupont. Mon numéro est le zéro six douze trente-quatre cinquante-six "
    "soixante dix-huit.",
    "3": "Internet.",
    "4": "D'accord, je vais essayer.",
    "5": "Oui, ça marche !",
}


def speak(voice: str, text: str) -> np.ndarray:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "150", "--stdout", text],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return resample(samples, rate)


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    parts = [f.to_ndarray() for f in resampler.resample(frame)]
    parts += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(parts, axis=1).reshape(-1)


def write(path: Path, voice: str, text: str) -> None:
    speech = speak(voice, text)
    pcm = np.concatenate(
        [
            np.zeros(int(LEAD_S * RATE), "<i2"),
            speech.astype("<i2"),
            np.zeros(int(TAIL_S * RATE), "<i2"),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    print(f"{path.name}: {voice}, {pcm.size / RATE:.2f} s: {text}")


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    for name, (voice, text) in PHRASES.items():
        write(out / f"{name}.wav", voice, text)
    for name, text in SAMPLE_LINES.items():
        write(SAMPLE_CALL / f"{name}.wav", "mb-fr1", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
