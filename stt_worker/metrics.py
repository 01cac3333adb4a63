"""Prometheus metrics of the STT worker (served on the metrics port by the process runner)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

CALLS_ACTIVE: Final = Gauge("voicebot_stt_calls_active", "Calls this STT worker transcribes")
TAKEOVERS: Final = Counter(
    "voicebot_stt_takeovers_total", "Calls taken over from a dead STT instance"
)
TRANSCRIPTS: Final = Counter(
    "voicebot_stt_transcripts_total", "Transcript events published", ["provider", "type"]
)
PROVIDER_ERRORS: Final = Counter(
    "voicebot_stt_provider_errors_total",
    "Provider failures (the stream is restarted)",
    ["provider", "code"],
)
BAD_AUDIO: Final = Counter("voicebot_stt_bad_audio_total", "audio.in messages skipped")
FINAL_LATENCY: Final = Histogram(
    "voicebot_stt_final_latency_seconds",
    "Captured end of speech to final transcript published",
    ["provider"],
    buckets=(0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0),
)
