"""The floor: a bare AudioSocket server that only paces, one shared uvloop ticker, no pipeline.

    .venv/bin/python bench/bare_ticker.py --port P [--voice-every N]

After a call's UUID it writes one 320-byte frame per call every 20 ms from one timer with
absolute deadlines (missed ticks skipped), and reads (and drops) whatever the caller sends. It
is what "paces perfectly" means on this machine: the baseline beside the edge, and the server
a load caller is checked against (its measured lateness is then the caller's own plus the
machine's). With --voice-every N, every Nth second is a 300 Hz tone, so a caller hears a bot
that speaks. Prints READY once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import struct

FRAME = 320
HEADER = b"\x10\x01\x40"
SILENCE = HEADER + bytes(FRAME)
PERIOD_S = 0.020


def tone_frames() -> list[bytes]:
    samples = [int(6000 * math.sin(2 * math.pi * 300 * i / 8000)) for i in range(8000)]
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    return [HEADER + pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


class Call(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.got < 19:
            self.got += len(data)
            if self.got >= 19:
                self.server.calls.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.calls.discard(self)


class Server:
    def __init__(self, voice_every: int) -> None:
        self.calls: set[Call] = set()
        self.voice_every = voice_every
        self.tone = tone_frames()
        self.n = 0

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + PERIOD_S
        self.loop.call_at(self.deadline, self.tick)

    def tick(self) -> None:
        frame = SILENCE
        second, i = divmod(self.n, 50)
        if self.voice_every and second % self.voice_every == 0:
            frame = self.tone[i]
        self.n += 1
        for call in list(self.calls):
            if call.transport is not None and not call.transport.is_closing():
                call.transport.write(frame)
        now = self.loop.time()
        self.deadline += PERIOD_S
        while self.deadline <= now:  # late by a period or more: skip, never burst
            self.deadline += PERIOD_S
        self.loop.call_at(self.deadline, self.tick)


async def serve(port: int, voice_every: int) -> None:
    server = Server(voice_every)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Call(server), "127.0.0.1", port, backlog=1024)
    server.start()
    print("READY", flush=True)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--voice-every", type=int, default=0, help="a tone every Nth second")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port, args.voice_every))


if __name__ == "__main__":
    main()
