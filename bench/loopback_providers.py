"""Deepgram, Groq and OpenAI speech on local ports, with realistic delays, for load runs.

    .venv/bin/python -m bench.loopback_providers [--script F] [--port-base P]
        [--stt-final-ms 300] [--llm-ms 150] [--tts-first-ms 200] [--tts-speed 3]

Serves, until Ctrl-C, the loopback servers of tests/loopback/ (the real SDKs talk to them):

- Deepgram live (`/v1/listen`, keyed mode): a caller line that is the tone of line k of the
  script (`voicebot call --keyed`) is heard as the script's k-th line; its final comes once
  --stt-final-ms of audio after the end of the tone has arrived.
- Groq / OpenAI chat completions: the offline rule-based NLU's reading of the utterance, as the
  JSON the brain asks the LLM for, after --llm-ms.
- OpenAI speech (`/v1/audio/speech`, 24 kHz PCM): the first audio after --tts-first-ms, then
  100 ms chunks --tts-speed times faster than real time (as the real one streams), as long as
  the text would take to say (about 14 characters a second).

It prints the environment to give `voicebot up` (keys are placeholders the loopbacks accept),
then a line per minute with what each server did. With --port-base P the ports are P, P+1, P+2
(else free ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from loopback.deepgram_live import DeepgramLoopback  # noqa: E402
from loopback.openai_chat import ChatServer, Request, Step  # noqa: E402
from loopback.openai_speech import OpenAISpeechServer, SpeechScript  # noqa: E402

from brain.nlu import understand  # noqa: E402
from voicebot.caller import SAMPLE_DIALOG, parse_script  # noqa: E402
from voicebot.load_script import spoken_texts  # noqa: E402
from voicebot.servers import free_port  # noqa: E402

API_KEY = "loopback"
CHARS_PER_S = 14.0  # French read at about 150 words a minute


def nlu_step(delay_s: float) -> Any:
    """What the chat loopback answers: the rules' reading of the caller's words, as LLM JSON."""

    def respond(request: Request) -> Step:
        try:
            asked = json.loads(request.messages[-1]["content"])
            text, expecting = asked["phrase_du_client"], asked.get("reponse_attendue")
        except (KeyError, IndexError, TypeError, ValueError):
            return Step(status=400, delay_s=delay_s)
        nlu = understand(text, expecting)
        reading = {
            "intent": nlu.intent,
            "slots": {k: nlu.slots.get(k) for k in ("name", "phone", "category", "topic", "speak")},
            "confidence": round(nlu.confidence, 2),
            "reply": None,
        }
        return Step(content=json.dumps(reading, ensure_ascii=False), delay_s=delay_s)

    return respond


def speech_script(first_s: float, speed: float) -> Any:
    def script_for(body: dict[str, object]) -> SpeechScript:
        text = str(body.get("input", ""))
        duration = max(0.5, round(len(text) / CHARS_PER_S, 1))
        return SpeechScript(
            frequency_hz=440.0,
            duration_s=duration,
            delay_s=first_s,
            chunk_s=0.1,
            pace_s=0.1 / speed,
        )

    return script_for


def keyed_texts(script: Path | None) -> tuple[str, list[str]]:
    if script is None:  # what `voicebot call --keyed` says without --script
        return "the sample dialog", spoken_texts(parse_script(SAMPLE_DIALOG))
    steps = parse_script(script.read_text(encoding="utf-8"), base_dir=script.parent)
    return script.name, spoken_texts(steps)


def server_for(args: argparse.Namespace, port: int) -> Any:
    """One provider's loopback, as an async context manager."""
    match args.serve:
        case "deepgram":
            return DeepgramLoopback(
                api_key=API_KEY,
                keyed=keyed_texts(args.script)[1],
                utterance_silence_s=args.stt_final_ms / 1000,
                keep_history=False,
                port=port,
            )
        case "chat":
            return ChatServer(
                port=port,
                responder=nlu_step(args.llm_ms / 1000),
                keep_requests=False,
                keep_alive=True,
            )
        case _:
            return OpenAISpeechServer(
                api_key=API_KEY,
                script_for=speech_script(args.tts_first_ms / 1000, args.tts_speed),
                keep_requests=False,
                port=port,
            )


async def serve_one(args: argparse.Namespace) -> None:
    """A child process: one provider, and how late its own event loop runs (a loopback that
    cannot keep up would add its lateness to the pipeline's figures)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lags: list[float] = []
    async with server_for(args, args.port):
        print("READY", flush=True)
        while not stop.is_set():
            t = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            lags.append(time.monotonic() - t - LAG_PROBE_S)
            if len(lags) * LAG_PROBE_S >= args.report_every or stop.is_set():
                lags.sort()
                print(
                    f"# {args.serve}: event loop lag p99 {1000 * lags[int(0.99 * len(lags))]:.1f}"
                    f" / max {1000 * lags[-1]:.1f} ms",
                    flush=True,
                )
                lags = []


LAG_PROBE_S = 0.01
PROVIDERS = ("deepgram", "chat", "speech")


def serve(args: argparse.Namespace) -> int:
    """The parent: one process per provider (at 200 calls the Deepgram one alone takes a
    fifth of a core), the environment for `voicebot up`, their reports until Ctrl-C."""
    base = args.port_base
    ports = {p: (base + i if base else free_port()) for i, p in enumerate(PROVIDERS)}
    children = {}
    for name in PROVIDERS:
        cmd = [sys.executable, "-m", "bench.loopback_providers", "--serve", name]
        cmd += ["--port", str(ports[name]), *sys.argv[1:]]
        children[name] = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for name, child in children.items():
            assert child.stdout is not None
            if "READY" not in child.stdout.readline():
                print(f"loopback {name} did not start", file=sys.stderr)
                return 1
        label, texts = keyed_texts(args.script)
        env = {
            "STT_PROVIDER": "deepgram",
            "DEEPGRAM_API_KEY": API_KEY,
            "DEEPGRAM_URL": f"ws://127.0.0.1:{ports['deepgram']}",
            "NLU_PROVIDER": "groq",
            "GROQ_API_KEY": API_KEY,
            "GROQ_BASE_URL": f"http://127.0.0.1:{ports['chat']}",
            "TTS_PROVIDER": "openai",
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": f"http://127.0.0.1:{ports['speech']}/v1",
        }
        print(
            f"# loopback providers: Deepgram final {args.stt_final_ms} ms after the end of "
            f"speech ({len(texts)} keyed lines of {label}), LLM {args.llm_ms} ms, "
            f"speech first audio {args.tts_first_ms} ms then {args.tts_speed:g}x real time",
            flush=True,
        )
        print(" ".join(f"{k}={v}" for k, v in env.items()), flush=True)
        relays = [
            threading.Thread(target=_relay, args=(child,), daemon=True)
            for child in children.values()
        ]
        for relay in relays:
            relay.start()
        while not stop.is_set() and all(c.poll() is None for c in children.values()):
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        for child in children.values():
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


def _relay(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        print(line, end="", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--script", type=Path, default=None, help="the callers' script (default: sample dialog)"
    )
    parser.add_argument("--port-base", type=int, default=0, help="ports P, P+1, P+2")
    parser.add_argument("--stt-final-ms", type=int, default=300)
    parser.add_argument("--llm-ms", type=int, default=150)
    parser.add_argument("--tts-first-ms", type=int, default=200)
    parser.add_argument("--tts-speed", type=float, default=3.0, help="x real time after that")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds between reports")
    parser.add_argument("--serve", choices=PROVIDERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is None:
        sys.exit(serve(args))
    import uvloop

    uvloop.run(serve_one(args))


if __name__ == "__main__":
    main()
