"""Prometheus metrics of the archiver."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

MESSAGES: Final = Counter(
    "voicebot_archiver_messages_total",
    "CALLS messages handled by the projection",
    ["result"],  # new | duplicate | undecodable | rejected | refused (kept raw only)
)
BATCHES: Final = Counter("voicebot_archiver_batches_total", "Batches committed")
BATCH_SECONDS: Final = Histogram(
    "voicebot_archiver_batch_seconds",
    "Fetch -> commit of one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_ERRORS: Final = Counter(
    "voicebot_archiver_db_errors_total", "Failed attempts to commit a batch", ["kind"]
)
DB_UP: Final = Gauge("voicebot_archiver_db_up", "1 while the last commit worked")
LAG: Final = Gauge(
    "voicebot_archiver_pending_messages", "CALLS messages not projected yet (consumer pending)"
)
LAST_SEQ: Final = Gauge("voicebot_archiver_last_seq", "Highest CALLS sequence committed")
