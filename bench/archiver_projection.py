"""How fast does the archiver project CALLS into PostgreSQL, batched vs one message at a time?

Starts a nats-server and a PostgreSQL (fsync on, as in production), publishes the events of
N calls the shape of real ones (caller turns with interim and final transcripts, decisions,
says, playback reports, a ticket, the end), then times the archiver's projector from its
start until it has committed them all, with `ARCHIVER_BATCH` messages a transaction and with
one (the baseline: ack after each commit, message by message). Prints messages per second
beside the rate the calls produce them (what it must keep up with), and the archiver's CPU
per message (this process: the projector and its NATS client; PostgreSQL's own is not in it).
`--turns` sets the calls' length: with hundreds of events a call, a projection whose per-batch
work grows with the call's history shows it in CPU per message.

    .venv/bin/python bench/archiver_projection.py [--calls 60] [--turns 8] [--batches 1,256]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import asyncpg

from archiver.config import ArchiverConfig
from archiver.projector import Projector
from brain.store import apply_schema
from events import schemas, subjects
from events.bus import Bus
from events.streams import CALLS, DurableConsumer, ensure_streams
from voicebot.servers import NatsServer, PostgresServer, free_port

CALL_S_PER_TURN = 7.5  # a turn's length: the calls' message rate is what the projection must
# keep up with (8 turns, the default, make the 60 s call the figures were first taken with)


async def publish_call(bus: Bus, n: int, turns: int) -> int:
    cid = subjects.new_call_id()
    t = time.time()
    sent = 0

    async def pub(subject: str, event: schemas.Base) -> None:
        nonlocal sent
        await bus.publish(subject, event)
        sent += 1

    await pub(
        subjects.event(cid, "started"), schemas.Started(call_id=cid, ts=t, caller=f"06{n:08d}")
    )
    state = "INIT"
    for turn in range(turns):
        u = f"u{turn}"
        await pub(subjects.say(cid), schemas.Say(call_id=cid, ts=t, utterance_id=u, text="Merci."))
        await pub(
            subjects.playback(cid), schemas.PlaybackStarted(call_id=cid, ts=t, utterance_id=u)
        )
        await pub(
            subjects.playback(cid),
            schemas.PlaybackFinished(call_id=cid, ts=t, utterance_id=u, frames=150),
        )
        for k in range(4):
            await pub(subjects.transcript(cid), schemas.Interim(call_id=cid, ts=t, text="ma" * k))
        await pub(
            subjects.transcript(cid),
            schemas.Final(call_id=cid, ts=t, text="ma box ne marche plus", latency_ms=300.0),
        )
        to = f"S{turn}"
        await pub(
            subjects.decision(cid),
            schemas.Decision(
                call_id=cid,
                ts=t,
                turn=turn,
                trigger="transcript",
                trigger_seq=0,
                state_from=state,
                state_to=to,
                text="ma box",
                intent="internet",
                latency=schemas.Latency(transcript_ms=300.0, say_ms=450.0),
                snapshot={"state": to, "customer_id": None},
            ),
        )
        state = to
    await pub(
        subjects.event(cid, "ticket"),
        schemas.Ticket(call_id=cid, ts=t, state="requested", summary="box"),
    )
    await pub(
        subjects.event(cid, "hangup"), schemas.Hangup(call_id=cid, ts=t, by="bot", reason="x")
    )
    await pub(
        subjects.event(cid, "ended"),
        schemas.Ended(
            call_id=cid, ts=t, reason="x", outcome="hangup", duration_s=turns * CALL_S_PER_TURN
        ),
    )
    return sent


async def project(nats_url: str, database_url: str, batch: int, total: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds (of this process) the projection of `total` messages took."""
    bus = await Bus.connect(nats_url, "bench")
    cfg = ArchiverConfig.from_env({"DATABASE_URL": database_url, "NATS_URL": nats_url})
    projector = Projector(replace(cfg, batch=batch), bus, DurableConsumer(durable=f"bench-{batch}"))
    t0, cpu0 = time.perf_counter(), time.process_time()
    await projector.start()
    while projector.committed < total:  # noqa: ASYNC110 - a counter, polled at 10 ms
        await asyncio.sleep(0.01)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await projector.stop()
    await bus.close()
    return elapsed, cpu


async def fresh_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    await apply_schema(url)
    return url


async def main_async(calls: int, turns: int, batches: list[int]) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="voicebot-bench-archiver-"))
    os.chmod(root, 0o755)  # the unprivileged postgres user must enter it when we are root
    nats = NatsServer(store_dir=root / "nats", port=free_port())
    pg = PostgresServer(data_dir=root / "pg", port=free_port())
    await asyncio.to_thread(nats.start)
    await asyncio.to_thread(pg.start)
    try:
        bus = await Bus.connect(nats.url, "bench")
        await ensure_streams(bus.js)
        sent = sum(await asyncio.gather(*(publish_call(bus, n, turns) for n in range(calls))))
        assert sent == (await bus.js.stream_info(CALLS)).state.messages
        await bus.close()
        produced = sent / calls / (turns * CALL_S_PER_TURN)  # messages a second of one call
        print(
            f"{calls} calls of {sent // calls} events, {sent} CALLS messages "
            f"({produced:.1f} a second per live call)"
        )
        print(
            f"{'batch':>6} {'seconds':>8} {'msgs/s':>8} {'live calls kept up with':>24} "
            f"{'CPU µs/msg':>11}"
        )
        figures: dict[str, object] = {"calls": calls, "turns": turns, "messages": sent}
        for batch in batches:
            url = await fresh_database(pg.url, f"bench_{batch}")
            elapsed, cpu = await project(nats.url, url, batch, sent)
            rate = sent / elapsed
            cpu_us = cpu / sent * 1e6
            figures[f"batch_{batch}"] = {
                "seconds": round(elapsed, 2),
                "messages_per_s": round(rate),
                "cpu_us_per_message": round(cpu_us),
            }
            print(
                f"{batch:>6} {elapsed:>8.2f} {rate:>8.0f} {rate / produced:>24.0f} {cpu_us:>11.0f}"
            )
        return figures
    finally:
        await asyncio.to_thread(pg.stop)
        await asyncio.to_thread(nats.stop)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--turns", type=int, default=8, help="caller turns a call (12 events each)")
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    figures = asyncio.run(
        main_async(args.calls, args.turns, [int(b) for b in args.batches.split(",")])
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
