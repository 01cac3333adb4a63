"""`python -m edge`: the AudioSocket edge alone (production shape: one edge per host)."""

from __future__ import annotations

import gc
import logging
import os
import sys

import uvloop
from prometheus_client import start_http_server

from edge.config import EdgeConfig
from edge.http_api import HttpApi
from edge.server import EdgeServer
from events import env
from events.bus import Bus
from events.env import ConfigError
from events.runtime import mark_ready, setup_logging, wait_for_signal
from events.streams import ensure_streams

log = logging.getLogger("edge")

SHUTDOWN_GRACE_S = 10.0


def realtime(priority: int) -> None:
    """Pace from a real-time thread of control: with STT and TTS busy on the same cores, a
    normal-priority ticker waits for a CPU and frames go out late (bench/edge_pacing.py: p99
    10-30 ms with the pipeline at normal priority, under 2 ms with SCHED_RR). The edge uses a
    fraction of one core, and the kernel keeps 5 % of every second for other processes."""
    if priority <= 0:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(priority))
    except (PermissionError, OSError) as e:
        log.warning(
            "no real-time priority (%s): pacing may suffer when the CPU is busy; "
            "grant CAP_SYS_NICE (systemd: CPUSchedulingPolicy=rr) or set EDGE_RT_PRIORITY=0",
            e,
        )
    else:
        log.info("pacing at real-time priority SCHED_RR %d", priority)


async def run(cfg: EdgeConfig) -> None:
    bus = await Bus.connect(cfg.nats_url, "edge")
    await ensure_streams(bus.js)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port)
    server = EdgeServer(cfg, bus)
    api = HttpApi(cfg, server)
    await server.start()
    await api.start()
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
    mark_ready()
    log.info("edge stopping on %s", await wait_for_signal())
    await server.stop(SHUTDOWN_GRACE_S)
    await api.stop()
    await bus.close()


def main() -> int:
    env.load_dotenv()
    setup_logging(env.get_str("LOG_LEVEL", "INFO"))
    try:
        cfg = EdgeConfig.from_env()
    except ConfigError as e:
        log.error("configuration error: %s", e)
        return 2
    realtime(cfg.rt_priority)
    uvloop.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
