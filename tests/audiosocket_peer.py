"""A minimal AudioSocket peer that behaves like Asterisk's `AudioSocket()` app, for tests.

It sends the UUID first, audio as kind 0x10 frames, DTMF as kind 0x03, and hangs up by closing
TCP (Asterisk never sends 0x00). It records every message the server sends with its arrival
time on the loop clock, and notes what Asterisk would refuse (any kind but 0x00 and audio,
empty audio frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field

from edge.framing import (
    Kind,
    Parser,
    ProtocolError,
    encode,
    encode_audio,
    encode_dtmf,
    encode_uuid,
    is_audio_kind,
)

FRAME_BYTES = 320


@dataclass(frozen=True, slots=True)
class Received:
    kind: int
    payload: bytes
    t: float  # loop.time() at arrival


@dataclass
class AudioSocketPeer:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    call_id: str = ""
    received: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # what Asterisk would reject
    hangup: asyncio.Event = field(default_factory=asyncio.Event)  # server sent 0x00
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # server closed TCP
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        call_id: str | None = None,
        *,
        send_uuid: bool = True,
        connect_s: float = 2.0,
    ) -> AudioSocketPeer:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), connect_s)
        peer = cls(reader, writer, call_id or str(uuid.uuid4()))
        peer._task = asyncio.create_task(peer._read(), name=f"peer-{peer.call_id}")
        if send_uuid:
            await peer.send_raw(encode_uuid(uuid.UUID(peer.call_id).bytes))
        return peer

    async def _read(self) -> None:
        parser = Parser(server_side=False)
        loop = asyncio.get_running_loop()
        try:
            while data := await self.reader.read(65536):
                now = loop.time()
                for msg in parser.feed(data):
                    self._record(Received(msg.kind, msg.payload, now))
            parser.eof()
        except ProtocolError as e:
            self.violations.append(f"unparsable stream: {e}")
        except (ConnectionError, OSError):
            pass
        finally:
            self.writer.close()  # as Asterisk: the server closed or hung up, so do we
            self.closed.set()
            self._changed.set()

    def _record(self, msg: Received) -> None:
        self.received.append(msg)
        self._changed.set()
        if msg.kind == Kind.HANGUP:
            self.hangup.set()
            if msg.payload:
                self.violations.append("hangup with a payload")
        elif not is_audio_kind(msg.kind):
            self.violations.append(f"kind 0x{msg.kind:02x} from the server kills the call")
        elif not msg.payload:
            self.violations.append("zero-length audio frame kills the call")

    @property
    def audio(self) -> list[Received]:
        return [m for m in self.received if is_audio_kind(m.kind)]

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), 2.0)

    async def send_audio(self, pcm: bytes, kind: int = Kind.SLIN) -> None:
        await self.send_raw(encode_audio(pcm, kind))

    async def send_dtmf(self, digit: str) -> None:
        await self.send_raw(encode_dtmf(digit))

    async def send_message(self, kind: int, payload: bytes) -> None:
        await self.send_raw(encode(kind, payload))

    async def stream(
        self,
        pcm: bytes,
        *,
        frame_bytes: int = FRAME_BYTES,
        kind: int = Kind.SLIN,
        period: float = 0.02,
    ) -> None:
        """Send `pcm` in real time, one frame per period, as the app does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        for start in range(0, len(pcm), frame_bytes):
            await self.send_audio(pcm[start : start + frame_bytes], kind)
            deadline += period
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def wait_audio(self, count: int, within_s: float = 5.0) -> list[Received]:
        async with asyncio.timeout(within_s):
            while len(self.audio) < count and not self.closed.is_set():
                self._changed.clear()
                await self._changed.wait()
        return self.audio

    async def wait_closed(self, within_s: float = 5.0) -> None:
        await asyncio.wait_for(self.closed.wait(), within_s)

    async def close(self) -> None:
        """The caller hangs up: TCP close, no 0x00 (as Asterisk does)."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
