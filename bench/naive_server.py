"""The baseline: the usual hand-rolled AudioSocket script, one task per call.

    .venv/bin/python bench/naive_server.py --port P [--uvloop]

Each call reads the UUID, then loops: write the next queued frame (or silence), then
`await asyncio.sleep(0.02)`. The sleep does not count the time the loop took to come back, so
every frame is a little late and the lateness adds up: the call drifts behind real time, and
Asterisk plays the missing frames as gaps. Prints READY once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections import deque

FRAME = 320
HEADER = b"\x10\x01\x40"
SILENCE = bytes(FRAME)
PERIOD_S = 0.02


async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        hello = await reader.readexactly(19)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
        return
    if hello[:3] != b"\x01\x00\x10":
        writer.close()
        return
    queued: deque[bytes] = deque()  # bot audio would be appended here; the bench plays silence

    async def read_caller() -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.read(65536):
                pass

    reading = asyncio.create_task(read_caller())
    try:
        while not reading.done():
            frame = queued.popleft() if queued else SILENCE
            writer.write(HEADER + frame)
            await asyncio.sleep(PERIOD_S)
    finally:
        reading.cancel()
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(call, "127.0.0.1", port, backlog=1024)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(serve(args.port))
    else:
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
