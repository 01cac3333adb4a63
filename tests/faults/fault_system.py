"""The whole system in its production shape, for fault tests: every service instance its own
OS process, which a test may kill -9, stop (SIGSTOP) or resume.

Processes are `voicebot.processes.ServiceProcess` (`python -m <service>`, ready through a file),
supervised as `voicebot up` supervises them: workers first, the edge last; a worker that exits
is restarted after 1 s (so a killed instance is followed by a third process). Unlike
`voicebot up`, an edge that dies does not stop the workers: the edge-crash test needs them
running to see them let the call go.

The system runs on its own event loop in a thread, so one system can serve several tests (each
with its own loop) and a test's loop never carries the processes. The STT provider is Deepgram
through the real SDK, against the loopback in keyed mode (tests/loopback/deepgram_live.py): a
caller's line k is a tone, heard as `lines[k]` by whichever STT instance receives it. Text the
bot says (not the cached phrases) is synthesized through the real `openai` SDK by the speech
loopback, streamed at about real time as the cloud voice does: a TTS owner that dies or stalls
mid-sentence has published only part of it, which is what a takeover must get right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from loopback.deepgram_live import DeepgramLoopback
from loopback.openai_speech import OpenAISpeechServer, SpeechScript

from events.bus import Bus
from events.streams import Retention, ensure_streams
from voicebot.processes import WORKERS, ServiceProcess
from voicebot.servers import free_port

log = logging.getLogger("tests.faults.system")

T = TypeVar("T")
RESTART_AFTER_S = 1.0  # as voicebot up's supervisor
START_TIMEOUT_S = 90.0
# Every synthesized text: 2 s of a rising sweep (no two frames alike), streamed in 0.1 s chunks
# a little faster than real time.
SPEECH = SpeechScript(
    frequency_hz=300.0, sweep_to_hz=1500.0, duration_s=2.0, chunk_s=0.1, pace_s=0.08
)
# The loopback ends a caller's line after this much quiet (Deepgram's endpointing is 300 ms).
END_OF_LINE_S = 0.3


def service_env(
    *,
    nats_url: str,
    database_url: str,
    data_dir: Path,
    audiosocket_port: int,
    http_port: int,
    deepgram_url: str,
    openai_url: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What every service process gets on top of os.environ (all settings it reads)."""
    return {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "AUDIOSOCKET_HOST": "127.0.0.1",
        "AUDIOSOCKET_PORT": str(audiosocket_port),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "METRICS_PORT": "0",
        "STT_METRICS_PORT": "0",
        "BRAIN_METRICS_PORT": "0",
        "TTS_METRICS_PORT": "0",
        "ARCHIVER_METRICS_PORT": "0",
        "CONSOLE_PORT": "0",  # the call console: not needed here
        "EDGE_RT_PRIORITY": "0",
        "EDGE_ID": f"edge-{audiosocket_port}",
        "NLU_PROVIDER": "rules",
        "TTS_PROVIDER": "openai",
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": openai_url,
        "TTS_POOL_WORKERS": "1",
        "CACHE_DIR": str(data_dir / "cache"),
        "STT_PROVIDER": "deepgram",
        "DEEPGRAM_API_KEY": "k",
        "DEEPGRAM_URL": deepgram_url,
        "VOICEBOT_TEST": "1",
        "LOG_LEVEL": "INFO",
        **(extra or {}),
    }


@dataclass
class FaultSystem:
    """`start()` it, place calls on `audiosocket_port`, `kill`/`stop`/`resume` its processes."""

    nats_url: str
    database_url: str
    data_dir: Path
    lines: Sequence[str]  # what the keyed loopback hears for the caller's line k
    scale: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(WORKERS, 2))
    env: Mapping[str, str] = field(default_factory=dict)
    audiosocket_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    procs: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    restarts: list[tuple[str, int, int]] = field(default_factory=list)  # service, old, new pid
    edge_exit: int | None = None
    dg: DeepgramLoopback | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None
    _started: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None
    _not_ready: set[int] = field(default_factory=set)  # pids restarted, not ready yet

    # --- life cycle (called from the test's thread) --------------------------------------------

    def start(self) -> FaultSystem:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="fault-system", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S) or self._error is not None:
            self.stop()
            raise RuntimeError(f"the system did not start: {self._error!r}")
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                for proc in self.all_procs():
                    with contextlib.suppress(ProcessLookupError, TypeError):
                        os.kill(proc.pid or -1, signal.SIGKILL)

    def __enter__(self) -> FaultSystem:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- the processes ---------------------------------------------------------------------------

    def all_procs(self) -> list[ServiceProcess]:
        return [p for procs in self.procs.values() for p in procs]

    def pids(self, service: str) -> list[int]:
        return [p.pid for p in self.procs.get(service, []) if p.pid is not None]

    def running(self, service: str) -> int:
        """Instances of `service` alive and ready (a restarted one counts once it is ready)."""
        return sum(
            1
            for p in self.procs.get(service, [])
            if p.proc is not None and p.proc.returncode is None and p.pid not in self._not_ready
        )

    def settled(self) -> bool:
        """Every worker instance is up and ready (none being restarted)."""
        return all(self.running(s) == n for s, n in self.scale.items())

    async def wait_settled(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.settled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not all ready after {timeout_s:.0f} s: {self.state()}")
            await asyncio.sleep(0.05)

    def state(self) -> dict[str, list[tuple[int | None, int | None]]]:
        return {
            s: [(p.pid, p.proc.returncode if p.proc else None) for p in procs]
            for s, procs in self.procs.items()
        }

    def service_of(self, pid: int) -> str | None:
        for service, procs in self.procs.items():
            if pid in [p.pid for p in procs]:
                return service
        return None

    @staticmethod
    def signal(pid: int, sig: signal.Signals) -> None:
        os.kill(pid, sig)

    # --- inside the system's thread ------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:
            self._error = e
            log.exception("fault system failed")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._started.set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        bus = await Bus.connect(self.nats_url, "faults-setup")
        try:
            # What `voicebot streams` does (as the admin: the services only check the streams),
            # with the services' settings (R3 on a cluster); it waits for a cluster that just
            # started to elect its leaders.
            await ensure_streams(bus.js, Retention.from_env(self.env))
        finally:
            await bus.close()
        async with (
            DeepgramLoopback(
                api_key="k", keyed=self.lines, utterance_silence_s=END_OF_LINE_S
            ) as dg,
            OpenAISpeechServer(api_key="k", script=SPEECH) as speech,
        ):
            self.dg = dg
            env = service_env(
                nats_url=self.nats_url,
                database_url=self.database_url,
                data_dir=self.data_dir,
                audiosocket_port=self.audiosocket_port,
                http_port=self.http_port,
                deepgram_url=dg.url,
                openai_url=speech.base_url,
                extra=self.env,
            )
            workers = [
                ServiceProcess(service, i, env=dict(env))
                for service in WORKERS
                for i in range(self.scale.get(service, 1))
            ]
            edge = ServiceProcess("edge", 0, env=dict(env))
            self.procs = {s: [p for p in workers if p.service == s] for s in WORKERS}
            self.procs["edge"] = [edge]
            try:
                for p in workers:
                    await p.start()
                await asyncio.gather(*(p.wait_ready() for p in workers))
                await edge.start()
                await edge.wait_ready(timeout_s=30.0)
                self._started.set()
                supervisor = asyncio.create_task(self._supervise(workers, edge))
                await self._stop.wait()
                supervisor.cancel()
                await asyncio.gather(supervisor, return_exceptions=True)
            finally:
                await edge.stop(grace_s=10.0)
                await asyncio.gather(*(p.stop(grace_s=10.0) for p in workers))

    async def _supervise(self, workers: list[ServiceProcess], edge: ServiceProcess) -> None:
        watched = [*workers, edge]
        while True:
            waiters = {asyncio.ensure_future(p.exited()): p for p in watched}
            try:
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in waiters:
                    fut.cancel()
            for fut in done:
                proc = waiters[fut]
                if proc is edge:
                    self.edge_exit = fut.result()
                    watched.remove(edge)
                    log.warning("edge exited with %s: not restarted", self.edge_exit)
                    continue
                old = proc.pid or 0
                await asyncio.sleep(RESTART_AFTER_S)
                await proc.start()
                assert proc.pid is not None
                self._not_ready.add(proc.pid)
                self.restarts.append((proc.service, old, proc.pid))
                asyncio.get_running_loop().create_task(self._ready(proc))
            if not watched:
                return

    async def _ready(self, proc: ServiceProcess) -> None:
        with contextlib.suppress(RuntimeError):
            await proc.wait_ready(timeout_s=60.0)
        self._not_ready.discard(proc.pid or 0)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        """Run `coro` on the system's loop (from another thread) and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)
