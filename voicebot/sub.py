"""`voicebot sub SUBJECT`: print messages like `nats sub` (subject, headers, body).

Control-plane bodies are JSON and printed as they are; audio is summarised on one line.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
from typing import TextIO

import nats
from nats.aio.msg import Msg

from events import codec
from events.auth import Login


def format_msg(msg: Msg, n: int, *, now: datetime.datetime | None = None) -> str:
    stamp = (now or datetime.datetime.now()).strftime("%H:%M:%S.%f")[:-3]
    subject = msg.subject
    headers = msg.headers or {}
    if ".audio." in subject:
        meta = " ".join(f"{k.removeprefix('Voicebot-').lower()}={v}" for k, v in headers.items())
        return (
            f"[#{n}] {stamp} {subject}: audio {len(msg.data)} B ({len(msg.data) // 16} ms) {meta}"
        )
    lines = [f"[#{n}] {stamp} Received on {subject!r}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    body = msg.data.decode("utf-8", errors="replace")
    try:
        codec.decode_subject(subject, msg.data)
    except codec.BadMessage as e:
        lines.append(f"!! does not match the schema: {e}")
    lines.append(body)
    return "\n".join(lines) + "\n"


async def subscribe(
    url: str,
    subject: str,
    *,
    count: int = 0,
    out: TextIO = sys.stdout,
    audio: bool = True,
    connect_timeout: float = 5.0,
    ready: asyncio.Event | None = None,
    login: Login | None = None,
) -> int:
    """Print messages on `subject` until `count` were printed (0: forever). Returns the count."""
    nc = await nats.connect(
        url,
        connect_timeout=connect_timeout,
        name="voicebot-sub",
        max_reconnect_attempts=-1,
        **(login.connect_options(url) if login is not None else {}),
    )
    done = asyncio.Event()
    n = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal n
        if not audio and ".audio." in msg.subject:
            return
        n += 1
        print(format_msg(msg, n), file=out, flush=True)
        if count and n >= count:
            done.set()

    await nc.subscribe(subject, cb=on_msg)
    await nc.flush(timeout=int(connect_timeout))  # the server has the subscription now
    if ready is not None:
        ready.set()
    try:
        await done.wait()
    finally:
        await nc.drain()
    return n
