"""Make the fixtures of expectation-aware recognition and turn-taking, once, by two voices.

Run by hand; the WAV files are checked in (tests never synthesise). Needs espeak-ng and the
MBROLA French voices fr1 (male) and fr4 (female): `apt-get install espeak-ng mbrola mbrola-fr1
mbrola-fr4`. Every clip is band-limited to the telephone band (300-3400 Hz) and 8 kHz mono.

- `tests/fixtures/stt/answers/<voice>-<name>.wav`: short answers to the bot's closed questions
  ("oui", "non", "internet", "c'est internet", a phone number...), 0.2 s of silence before,
  0.3 s after. `ANSWERS` says what each one is and which expectation it answers.
- `tests/fixtures/stt/turns/<voice>-<name>.wav`: whole caller lines with pauses inside them
  (a name then a number read in groups, a filler before the answer...), each segment
  synthesised alone and joined with an exact pause, so the end of speech is known to the
  sample. `TURNS` gives the segments and pauses; `turns.json` beside the WAVs gives, per file,
  the speech intervals (seconds) that make the one turn.

    .venv/bin/python scripts/make_answer_fixtures.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_stt_fixtures import RATE, speak

PROJECT = Path(__file__).resolve().parents[1]
OUT = PROJECT / "tests" / "fixtures" / "stt"
VOICES = ("mb-fr1", "mb-fr4")
LEAD_S = 0.2
TAIL_S = 0.3
TURN_LEAD_S = 0.3
TURN_TAIL_S = 0.3  # readers append the silence they need after the line
BAND_HZ = (300.0, 3400.0)

# name -> (text spoken, expectation it answers, the answer's meaning)
ANSWERS: dict[str, tuple[str, str, str]] = {
    "oui": ("oui", "yes_no", "oui"),
    "non": ("non", "yes_no", "non"),
    "oui-ca-marche": ("oui, ça marche", "yes_no", "oui"),
    "non-toujours-pas": ("non, toujours pas", "yes_no", "non"),
    "internet": ("internet", "category", "internet"),
    "mobile": ("mobile", "category", "mobile"),
    "cest-internet": ("c'est internet", "category", "internet"),
    "le-mobile": ("c'est le mobile", "category", "mobile"),
    "phone": (
        "zéro six douze trente-quatre cinquante-six soixante-dix-huit",
        "phone",
        "0612345678",
    ),
    "phone-2": (
        "zéro sept quarante-cinq vingt-neuf quatre-vingt-un zéro trois",
        "phone",
        "0745298103",
    ),
}

# name -> segments of one caller line and the pause (s) after each but the last
TURNS: dict[str, tuple[tuple[str, float], ...]] = {
    "identity": (
        ("Pierre Dupont", 0.6),
        ("zéro six, douze, trente-quatre", 0.5),
        ("cinquante-six, soixante-dix-huit.", 0.0),
    ),
    "number": (
        ("Mon numéro est le", 0.45),
        ("zéro six douze trente-quatre cinquante-six soixante-dix-huit.", 0.0),
    ),
    "problem": (("Bonjour, j'ai un problème", 0.4), ("avec ma box internet.", 0.0)),
    "filler": (("Euh", 0.5), ("internet.", 0.0)),
    "hesitation": (("C'est pour", 0.45), ("le mobile.", 0.0)),
    "backchannel": (("Hum", 0.5), ("oui, d'accord.", 0.0)),
    "yes": (("Oui.", 0.0),),
    "no": (("Non, toujours pas.", 0.0),),
    "category": (("Internet.", 0.0),),
    "solved": (("Oui, ça marche !", 0.0),),
}


def band_limit(x: np.ndarray) -> np.ndarray:
    """Telephone band: zero the spectrum outside 300-3400 Hz (offline, whole clip)."""
    spectrum = np.fft.rfft(x.astype(np.float64))
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    spectrum[(freqs < BAND_HZ[0]) | (freqs > BAND_HZ[1])] = 0
    y = np.fft.irfft(spectrum, n=x.size)
    return np.clip(np.round(y), -32768, 32767).astype("<i2")


def trimmed(voice: str, text: str) -> np.ndarray:
    """The speech alone: espeak's own leading and trailing silence removed (10 ms kept)."""
    x = speak(voice, text).astype("<i2")
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > 300)  # -40 dBFS
    if loud.size == 0:
        raise RuntimeError(f"{voice} said nothing for {text!r}")
    margin = RATE // 100
    return x[max(0, loud[0] - margin) : loud[-1] + margin]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), "<i2")


def write(path: Path, pcm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def make_answers() -> None:
    meta = {}
    for voice in VOICES:
        for name, (text, expecting, meaning) in ANSWERS.items():
            pcm = band_limit(
                np.concatenate([silence(LEAD_S), trimmed(voice, text), silence(TAIL_S)])
            )
            file = f"{voice}-{name}.wav"
            write(OUT / "answers" / file, pcm)
            meta[file] = {"text": text, "expecting": expecting, "meaning": meaning, "voice": voice}
            print(f"answers/{file}: {pcm.size / RATE:.2f} s: {text}")
    (OUT / "answers" / "answers.json").write_text(
        json.dumps(meta, indent=1, ensure_ascii=False) + "\n"
    )


def make_turns() -> None:
    meta = {}
    for voice in VOICES:
        for name, segments in TURNS.items():
            parts = [silence(TURN_LEAD_S)]
            spans = []
            at = TURN_LEAD_S
            for text, pause in segments:
                speech = trimmed(voice, text)
                spans.append([round(at, 4), round(at + speech.size / RATE, 4)])
                at += speech.size / RATE + pause
                parts += [speech, silence(pause)]
            parts.append(silence(TURN_TAIL_S))
            pcm = band_limit(np.concatenate(parts))
            file = f"{voice}-{name}.wav"
            write(OUT / "turns" / file, pcm)
            meta[file] = {"text": " ".join(t for t, _ in segments), "speech": spans}
            print(f"turns/{file}: {pcm.size / RATE:.2f} s, {len(spans)} segment(s)")
    (OUT / "turns" / "turns.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


def main() -> int:
    try:
        subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"espeak-ng is needed: {e}", file=sys.stderr)
        return 1
    make_answers()
    make_turns()
    return 0


if __name__ == "__main__":
    sys.exit(main())
