"""How many audio.in messages a second does a caller's speech cost? The edge's rule vs older ones.

Feeds recorded French lines (assets/sample_call, the phone-number answer fixtures of both
voices), each followed by 2 s of quiet, frame by frame through the edge's own VAD
(edge/vad.py, its defaults) and `InboundBatcher` (AUDIO_IN_BATCH_MS=100), and counts the
messages that leave. Baselines, same audio: one message per frame (AUDIO_IN_BATCH_MS=20), and
the rule before the tail window (every quiet frame after speech, a pause between two words
included, sent the next second frame by frame). Also prints, for each rule, how late the
frames around the recognisers' decisions (250 ms to 1 s of quiet after a line) reach the
STT worker: the window's whole point is that these stay at 0.

    .venv/bin/python bench/inbound_batching.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]

from edge.inbound import InboundBatcher  # noqa: E402
from edge.vad import EnergyVad  # noqa: E402
from events.audio import FRAME_BYTES, SAMPLE_RATE  # noqa: E402

FRAME_S = 0.02
QUIET_AFTER_S = 2.0
BATCH_FRAMES = 5  # AUDIO_IN_BATCH_MS=100
DECISIONS_S = (0.25, 0.3, 0.8, 1.0)  # offline turn detector, Deepgram endpointing, both ends


def lines() -> list[tuple[str, bytes]]:
    files = sorted((ROOT / "assets" / "sample_call").glob("*.wav"))
    files += sorted((ROOT / "tests" / "fixtures" / "stt" / "answers").glob("*phone*.wav"))
    out = []
    for f in files:
        with wave.open(str(f)) as w:
            assert w.getframerate() == SAMPLE_RATE and w.getsampwidth() == 2
            pcm = w.readframes(w.getnframes())
        out.append((f.name, pcm + bytes(int(QUIET_AFTER_S * SAMPLE_RATE) * 2)))
    return out


# A rule: (frame, the VAD's change, quiet after speech in s) -> frames sent now (0: held)
Rule = Callable[[bytes, str | None, float], int]


def current_rule() -> Rule:
    batcher = InboundBatcher(BATCH_FRAMES * FRAME_BYTES, max_age_ticks=BATCH_FRAMES + 1)
    t = [0.0]

    def add(frame: bytes, change: str | None, quiet_s: float) -> int:
        batch = batcher.add(
            frame, capture_ts=t[0], audio_t=t[0], onset=change == "onset",
            quiet_after_speech_s=quiet_s,
        )  # fmt: skip
        t[0] += FRAME_S
        return len(batch.pcm) // FRAME_BYTES if batch else 0

    return add


def previous_rule() -> Rule:
    """Before the tail window: each quiet frame after speech kept frames alone 1 s longer."""
    held, t, urgent_until = [0], [0.0], [-1.0]

    def add(frame: bytes, change: str | None, quiet_s: float) -> int:
        held[0] += 1
        t[0] += FRAME_S
        if quiet_s > 0:
            urgent_until[0] = t[0] + 1.0
        if change == "onset" or t[0] <= urgent_until[0] + 1e-9 or held[0] >= BATCH_FRAMES:
            sent, held[0] = held[0], 0
            return sent
        return 0

    return add


def frame_by_frame() -> Rule:
    return lambda frame, change, quiet_s: 1


def run(make_rule: Callable[[], Rule]) -> dict[str, float]:
    messages = frames = 0
    late: list[float] = []  # per decision point: how long its frame waited at the edge
    for _, pcm in lines():
        vad, add = EnergyVad(), make_rule()
        waiting: list[int] = []  # frames held, by index
        quiet_since: int | None = None
        for i in range(len(pcm) // FRAME_BYTES):
            frame = pcm[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]
            was_speaking = vad.speaking
            change = vad.feed(frame)
            quiet_s = vad.quiet_s if was_speaking else 0.0
            if was_speaking and not vad.loud and quiet_since is None:
                quiet_since = i
            elif vad.loud:
                quiet_since = None
            waiting.append(i)
            sent = add(frame, change, quiet_s)
            if sent:
                messages += 1
                for j in waiting[:sent]:
                    if quiet_since is None:
                        continue
                    quiet_at_j = (j - quiet_since + 1) * FRAME_S
                    # The frame that completes a decision's quiet (0.25 s: the 13th, 0.26 s)
                    if any(quiet_at_j - FRAME_S < d <= quiet_at_j + 1e-9 for d in DECISIONS_S):
                        late.append((i - j) * FRAME_S)
                del waiting[:sent]
            frames += 1
    seconds = frames * FRAME_S
    return {
        "messages_per_s": round(messages / seconds, 1),
        "frames_per_message": round(frames / max(messages, 1), 2),
        "decision_frames_late_max_ms": round(1000 * max(late, default=0.0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    n = len(lines())
    print(f"{n} recorded lines, each then {QUIET_AFTER_S:g} s of quiet; AUDIO_IN_BATCH_MS=100")
    rows = {
        "frame by frame (AUDIO_IN_BATCH_MS=20)": run(frame_by_frame),
        "previous rule (every quiet frame after speech: 1 s alone)": run(previous_rule),
        "tail window (120 ms to 1.1 s of quiet alone)": run(current_rule),
    }
    for name, r in rows.items():
        print(
            f"  {name}: {r['messages_per_s']} messages/s ({r['frames_per_message']} frames "
            f"each); frames at the decision points held up to {r['decision_frames_late_max_ms']} ms"
        )
    if args.json:
        args.json.write_text(json.dumps({"lines": n, "rules": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
