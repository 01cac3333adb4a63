"""Prometheus metrics of the console."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

REQUESTS: Final = Counter(
    "voicebot_console_requests_total", "HTTP requests answered", ["route", "status"]
)
REFUSED: Final = Counter(
    "voicebot_console_refused_total",
    "Requests refused before any data was read",
    ["reason"],  # unauthenticated | not_loopback | forbidden
)
LIVE_CLIENTS: Final = Gauge("voicebot_console_live_clients", "Browsers on the live stream")
LIVE_CALLS: Final = Gauge("voicebot_console_live_calls", "Calls on the live board")
DROPPED_CLIENTS: Final = Counter(
    "voicebot_console_dropped_clients_total", "Live streams closed because the browser lagged"
)
RENDERS: Final = Counter(
    "voicebot_console_renders_total", "Call audio rendered for a page", ["source"]
)
RENDER_SECONDS: Final = Histogram(
    "voicebot_console_render_seconds",
    "Reading and rendering a call's audio (waveform, WAV)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
