"""`voicebot call --calls N ...`: prepare the script, place the calls, print the figures."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from events import env
from events.auth import Login
from voicebot.caller import Step
from voicebot.load_caller import LoadOptions, LoadRun
from voicebot.load_figures import ProviderDelays
from voicebot.load_follow import SayFollower
from voicebot.load_report import figures, per_call, print_report
from voicebot.load_script import prepare


def parse_delays(text: str | None) -> ProviderDelays | None:
    """`300,150,200` (ms: STT final after the end of speech, LLM, TTS first audio)."""
    if text is None:
        return None
    try:
        stt, llm, tts = (float(x) / 1000 for x in text.split(","))
    except ValueError:
        raise ValueError(f"--provider-delays takes STT,LLM,TTS in ms, got {text!r}") from None
    return ProviderDelays(stt, llm, tts)


async def load_call(
    args: argparse.Namespace, steps: Sequence[Step], port: int, synth: Callable[[str], bytes]
) -> int:
    try:
        delays = parse_delays(args.provider_delays)
        opts = LoadOptions(
            host=args.host,
            port=port,
            calls=args.calls,
            duration_s=args.duration,
            ramp_s=args.ramp,
            phases=args.phases,
            warmup_s=args.warmup,
            turn_timeout_s=args.timeout,
        )
        prepared = await asyncio.to_thread(prepare, steps, synth=synth, keyed=args.keyed)
    except ValueError as e:
        print(f"voicebot call: {e}", file=sys.stderr)
        return 2
    follower = SayFollower()
    url = env.get_str("NATS_URL", "nats://127.0.0.1:4222")
    following = await follower.start(url, Login.from_env("tracer"))
    print(
        f"Placing {opts.calls} calls on {opts.host}:{port} "
        f"({'together' if not opts.ramp_s else f'over {opts.ramp_s:g} s'}, "
        f"{opts.duration_s:g} s, {len(steps)} steps{', keyed' if args.keyed else ''}"
        f"{'' if following else ', no NATS: no latency breakdown'})",
        flush=True,
    )
    try:
        result = await LoadRun(opts, prepared).run()
        await asyncio.sleep(0.2)  # the last events of the calls
    finally:
        await follower.close()
    figs = figures(result, follower if following else None, delays)
    print_report(result, figs, sys.stdout, calls=not args.quiet)
    if args.json is not None:
        record = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine(),
            "options": dataclasses.asdict(opts),
            "figures": figs,
            "per_call": [per_call(leg, follower if following else None) for leg in result.legs],
        }
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 1 if figs["dropped"] else 0


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
