"""Placing the harness's calls: one persona in one condition per call, a few at a time."""

from __future__ import annotations

import asyncio
import io
import random
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from quality import record, synth
from quality.observer import Watch
from quality.personas import Persona
from quality.policy import ScriptedCaller
from voicebot.caller import Caller, CallResult

HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Job:
    persona: Persona
    condition: synth.Condition


@dataclass(frozen=True)
class Target:
    """Where the system under test listens."""

    host: str
    audiosocket_port: int
    http_port: int


@dataclass(frozen=True, kw_only=True)
class CallLimits:
    max_lines: int = 14  # the caller's patience, in lines
    max_call_s: float = 240.0  # ... and in seconds
    turn_timeout_s: float = 20.0  # longest wait for the bot to say anything after a line


async def run_all(
    jobs: Sequence[Job],
    target: Target,
    watch: Watch,
    *,
    concurrency: int,
    limits: CallLimits,
    out: TextIO = sys.stdout,
) -> list[record.CallRecord]:
    """Every job, `concurrency` calls at a time; records in the jobs' order."""
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(job: Job) -> record.CallRecord:
        nonlocal done
        async with gate:
            rec = await run_call(job, target, watch, limits)
        done += 1
        print(f"[{done:3}/{len(jobs)}] {_summary(rec)}", file=out, flush=True)
        return rec

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def run_call(job: Job, target: Target, watch: Watch, limits: CallLimits) -> record.CallRecord:
    persona, cond = job.persona, job.condition
    call_id = str(uuid.uuid4())
    view = watch.open(call_id)
    seed = synth.seed_of(persona.key, cond.label)
    policy = ScriptedCaller(
        persona,
        view,
        random.Random(seed),
        max_lines=limits.max_lines,
        max_call_s=limits.max_call_s,
    )
    caller = Caller(
        target.host,
        target.audiosocket_port,
        policy,
        call_id=call_id,
        synth=_voice(cond),
        out=io.StringIO(),
        end_of_turn_s=0.3,
        turn_timeout_s=limits.turn_timeout_s,
        final_wait_s=30.0,
        ambience=synth.ambience(cond, seed),
    )
    policy.caller = caller
    errors: list[str] = []
    if persona.caller_id:
        try:
            await register_caller(target, call_id, persona.caller_id)
        except (OSError, TimeoutError) as e:
            errors.append(f"caller registration: {e!r}")
    try:
        async with asyncio.timeout(limits.max_call_s + 90):
            result = await caller.run()
    except Exception as e:  # a network fault, or a persona's own bug: this
        # call is a failure with its error, and the run's other calls are not lost with it
        errors.append(f"call: {e!r}")
        result = caller.result if caller.result.started_wall else CallResult(call_id)
    events = await watch.history(call_id)
    return record.build(
        persona,
        cond,
        result,
        events,
        gave_up=policy.gave_up,
        stale_questions=policy.stale_questions,
        errors=errors,
    )


def _voice(cond: synth.Condition) -> Callable[[str], bytes]:
    def speak(text: str) -> bytes:
        return synth.line_pcm(text, cond.voice, cond.rate)

    return speak


async def register_caller(target: Target, call_id: str, number: str) -> None:
    """What the dialplan does before AudioSocket(): PUT the caller's number (from loopback,
    which the HTTP API accepts without a token)."""
    body = number.encode()
    head = (
        f"PUT /calls/{call_id}/caller HTTP/1.1\r\nHost: {target.host}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    async with asyncio.timeout(HTTP_TIMEOUT_S):
        reader, writer = await asyncio.open_connection(target.host, target.http_port)
        try:
            writer.write(head.encode() + body)
            status = (await reader.readline()).decode().split()
        finally:
            writer.close()
    if len(status) < 2 or status[1] != "204":
        raise OSError(f"caller registration answered {' '.join(status) or 'nothing'}")


def _summary(rec: record.CallRecord) -> str:
    mark = "ok  " if rec.success else "FAIL"
    got = ", ".join(x for x in (rec.outcome, rec.category, rec.customer) if x) or "no outcome"
    lat = [ln.latency_s for ln in rec.lines if ln.latency_s is not None and ln.kind != "dtmf"]
    p50 = f"{sorted(lat)[len(lat) // 2]:.2f} s" if lat else "-"
    why = f"  <- {'; '.join(rec.reasons)}" if rec.reasons else ""
    return (
        f"{mark} {rec.persona:<28} {rec.condition:<22} {got:<36} {rec.turns:2} turns, "
        f"latency ~{p50}, {rec.duration_s:.0f} s{why}"
    )
