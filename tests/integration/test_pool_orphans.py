"""A service killed with SIGKILL takes its process pool with it: no orphan keeps its memory.

Found by tests/faults: every kill -9 of a TTS worker left its audio pool process (and
multiprocessing's resource tracker) running for ever, holding the stdout it inherited, which
kept `python -m bench failover` waiting on its pipe after the bench had finished.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

PROJECT = Path(__file__).resolve().parents[2]

# A stand-in for the TTS worker: start the audio pool, say its pids, then wait to be killed.
SERVICE = """
import asyncio, sys
from tts_worker.resample import AudioPool

async def main():
    pool = AudioPool(2)
    await pool.start()
    print(" ".join(map(str, pool.pids())), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.timeout(60)
def test_pool_processes_end_with_their_killed_service() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", SERVICE],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as service:
        try:
            assert service.stdout is not None
            pids = [int(p) for p in service.stdout.readline().split()]
            assert len(pids) == 2 and all(alive(p) for p in pids)
            os.kill(service.pid, signal.SIGKILL)
            service.wait()
            deadline = time.monotonic() + 5
            while any(alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(alive(p) for p in pids), "pool processes outlived their service"
        finally:
            if service.poll() is None:
                service.kill()
