"""`python -m edge`: the AudioSocket edge alone (production shape: one edge per host)."""

from __future__ import annotations

import gc
import logging
import os
import sys

from edge.config import EdgeConfig
from edge.http_api import HttpApi
from edge.server import EdgeServer
from events import runtime
from events.bus import Bus
from events.streams import ensure_streams

log = logging.getLogger("edge")

SHUTDOWN_GRACE_S = 10.0


def realtime(cfg: EdgeConfig) -> None:
    """Pace from a real-time thread of control: with STT and TTS busy on the same cores, a
    normal-priority ticker waits for a CPU and frames go out late (bench/edge_pacing.py: p99
    10-30 ms with the pipeline at normal priority, under 2 ms with SCHED_RR). The edge uses a
    fraction of one core, and the kernel keeps 5 % of every second for other processes."""
    priority = cfg.rt_priority
    if priority <= 0:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(priority))
    except (PermissionError, OSError) as e:
        log.warning(
            "no real-time priority (%s): pacing may suffer when the CPU is busy; "
            "grant CAP_SYS_NICE (systemd: LimitRTPRIO=%d) or set EDGE_RT_PRIORITY=0",
            e,
            priority,
        )
    else:
        log.info("pacing at real-time priority SCHED_RR %d", priority)


async def run(cfg: EdgeConfig) -> None:
    health = runtime.Health("edge")
    health.start()
    bus = await Bus.connect(cfg.nats_url, "edge", login=cfg.nats_login)
    health.check("nats", lambda: bus.nc.is_connected)
    runtime.serve_metrics(cfg.metrics_port, health)
    await ensure_streams(bus.js, manage=False)
    server = EdgeServer(cfg, bus)
    api = HttpApi(cfg, server)
    await server.start()
    await api.start()
    health.check("audiosocket", lambda: server.ready)
    # Everything allocated so far lives for the whole process: keep it out of the collector,
    # whose full passes (16-31 ms at 200 calls) would delay every call's frame at once.
    gc.collect()
    gc.freeze()
    log.info(
        "edge %s up: AudioSocket %d, HTTP %d, metrics %d",
        cfg.edge_id,
        cfg.port,
        cfg.http_port,
        cfg.metrics_port,
    )
    log.info("HTTP API caller registration: %s", cfg.write_access)
    health.ready()
    log.info("edge stopping on %s", await runtime.wait_for_signal())
    await server.stop(SHUTDOWN_GRACE_S)
    await api.stop()
    await bus.close()


if __name__ == "__main__":
    sys.exit(runtime.main("edge", EdgeConfig.from_env, run, before_loop=realtime))
