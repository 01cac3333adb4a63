"""Prometheus metrics of the edge (default registry; `__main__` serves them on METRICS_PORT)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_CALLS: Final = Gauge("voicebot_edge_active_calls", "Calls holding an AudioSocket now")
CALLS: Final = Counter("voicebot_edge_calls_total", "Finished calls by outcome", ["outcome"])
FRAMES_IN: Final = Counter(
    "voicebot_edge_frames_in_total", "Caller audio received, in 20 ms frames of 8 kHz audio"
)
FRAMES_OUT: Final = Counter("voicebot_edge_frames_out_total", "320 B frames written to Asterisk")
UNDERRUNS: Final = Counter(
    "voicebot_edge_underruns_total", "Ticks where a playing utterance had no frame ready"
)
PREBUFFER: Final = Gauge(
    "voicebot_edge_prebuffer_seconds",
    "Bot audio an utterance waits for before it plays (grows after under-runs)",
)
PACING_LATENESS: Final = Histogram(
    "voicebot_edge_pacing_lateness_seconds",
    "How late the shared ticker ran against its absolute deadline",
    buckets=(0.0002, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.02, 0.05),
)
TICKS_SKIPPED: Final = Counter(
    "voicebot_edge_ticks_skipped_total", "Ticks skipped because the loop was a frame late"
)
FLUSHES: Final = Counter("voicebot_edge_flushes_total", "Flushes of queued bot audio", ["source"])
BARGEINS: Final = Counter("voicebot_edge_bargeins_total", "Barge-ins detected by the local VAD")
PROTOCOL_ERRORS: Final = Counter(
    "voicebot_edge_protocol_errors_total", "AudioSocket protocol errors by kind", ["kind"]
)
REFUSED_PEERS: Final = Counter(
    "voicebot_edge_refused_peers_total", "Connections closed because the peer is not allowed"
)
BUSY_CALLS: Final = Counter(
    "voicebot_edge_busy_calls_total", "Calls above MAX_CONCURRENT_CALLS given the busy phrase"
)
HTTP_REFUSALS: Final = Counter(
    "voicebot_edge_http_refusals_total", "HTTP API requests refused", ["reason"]
)
DROPPED_OUT: Final = Counter(
    "voicebot_edge_dropped_out_frames_total",
    "Bot frames dropped: queue full, audio of a flushed/finished utterance, or already received "
    "(repeated: a new TTS owner re-speaking an utterance from its start)",
    ["reason"],
)
STALE_DROPPED: Final = Counter(
    "voicebot_edge_stale_owner_messages_total",
    "Messages ignored because they came from a worker instance that lost the call (fencing)",
    ["service"],
)
LOCAL_PHRASES: Final = Counter(
    "voicebot_edge_local_phrases_total",
    "Cached phrases the edge played itself because the pipeline was silent",
    ["phrase"],
)
ALIVE_BEATS: Final = Counter(
    "voicebot_edge_alive_beats_total", "Liveness beats naming this edge's calls"
)
TURN_LATENCY: Final = Histogram(
    "voicebot_edge_turn_latency_seconds",
    "End of the caller's line (or the call's start, or a key press) to the first frame of the "
    "bot's answer played",
    ["after"],  # start | speech | dtmf
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0),
)
DEAD_AIR: Final = Histogram(
    "voicebot_edge_dead_air_seconds",
    "Silence the caller heard while the bot owed an answer, to the first sound (the answer or "
    "the edge's hold phrase)",
    buckets=(0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0),
)
PLAYOUT_DELAY: Final = Histogram(
    "voicebot_edge_playout_delay_seconds",
    "First bot audio of an utterance received to its first frame written (jitter buffer, "
    "speech queued before it)",
    buckets=(0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0),
)
