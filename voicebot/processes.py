"""Each service instance of `voicebot up` as its own OS process: the production shape, locally.

`python -m <service>` per instance, in its own session (a Ctrl-C in the terminal reaches
`voicebot up`, which stops the edge first so calls get their goodbye, then the workers). An
instance is ready when it has written its readiness file (events/runtime.mark_ready), after it
connected, claimed its consumers and loaded its models. Anyone may `kill -9` one from a shell:
the others take its calls over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from voicebot.secrets import environment_for

log = logging.getLogger("voicebot.processes")

WORKERS: Final = ("tts_worker", "stt_worker", "brain", "archiver")
# Each service's metrics port variable and default; instance i serves on default + 10 * i.
METRICS_PORTS: Final = {
    "edge": ("METRICS_PORT", 9091),
    "stt_worker": ("STT_METRICS_PORT", 9092),
    "brain": ("BRAIN_METRICS_PORT", 9093),
    "tts_worker": ("TTS_METRICS_PORT", 9094),
    "archiver": ("ARCHIVER_METRICS_PORT", 9096),
    "console": ("CONSOLE_METRICS_PORT", 9097),
}
# The call console: one instance (it has a web port of its own), off with CONSOLE_PORT=0.
CONSOLE: Final = "console"
INSTANCE_PORT_STEP: Final = 10
READY_TIMEOUT_S: Final = 90.0  # the STT worker joins and loads its model on a first start


class ScaleError(ValueError):
    pass


def parse_scale(text: str | None) -> dict[str, int]:
    """`brain=2,stt_worker=2` -> instances per worker (1 for those not named)."""
    scale = dict.fromkeys(WORKERS, 1)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, count = part.partition("=")
        name = name.strip()
        if not sep or name not in scale:
            raise ScaleError(f"--scale: expected {'|'.join(WORKERS)}=N, got {part.strip()!r}")
        try:
            n = int(count)
        except ValueError:
            raise ScaleError(f"--scale: {name} needs a whole number, got {count!r}") from None
        if not 1 <= n <= 16:
            raise ScaleError(f"--scale: {name}={n} is not between 1 and 16")
        scale[name] = n
    return scale


def metrics_port(service: str, index: int, environ: dict[str, str]) -> int:
    variable, default = METRICS_PORTS[service]
    base = int(environ.get(variable) or default)
    return 0 if base == 0 else base + INSTANCE_PORT_STEP * index


@dataclass
class ServiceProcess:
    service: str
    index: int = 0
    env: dict[str, str] = field(default_factory=dict)  # on top of os.environ
    proc: asyncio.subprocess.Process | None = None
    _ready_file: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.service}[{self.index + 1}]"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def port(self) -> int:
        return metrics_port(self.service, self.index, {**os.environ, **self.env})

    async def start(self) -> None:
        fd, name = tempfile.mkstemp(prefix=f"voicebot-{self.service}-", suffix=".ready")
        os.close(fd)
        self._ready_file = Path(name)
        self._ready_file.unlink()
        variable, _ = METRICS_PORTS.get(self.service, ("", 0))
        # Only its own secrets: the others' NATS passwords and keys stay with `voicebot up`.
        environ = environment_for(self.service, {**os.environ, **self.env})
        environ["VOICEBOT_READY_FILE"] = name
        if variable:
            environ[variable] = str(self.port)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.service, env=environ, start_new_session=True
        )

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        assert self.proc is not None and self._ready_file is not None
        deadline = time.monotonic() + timeout_s
        while not self._ready_file.exists():
            if self.proc.returncode is not None:
                raise RuntimeError(
                    f"{self.label} exited with code {self.proc.returncode} (log above)"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} was not ready within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)
        self._ready_file.unlink(missing_ok=True)

    async def exited(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM (a clean stop hands its calls over at once), SIGKILL after `grace_s`."""
        if self._ready_file is not None:
            self._ready_file.unlink(missing_ok=True)
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=grace_s)
        except TimeoutError:
            log.warning("%s did not stop in %.0f s: killing it", self.label, grace_s)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
