"""Prometheus metrics of the TTS worker."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

SAYS: Final = Counter("voicebot_tts_says_total", "Say requests handled", ["kind"])  # phrase|text
FLUSHED: Final = Counter("voicebot_tts_flushed_total", "Utterances stopped by a control flush")
PROVIDER_REQUESTS: Final = Counter(
    "voicebot_tts_provider_requests_total", "Sentences sent to a provider", ["provider"]
)
PROVIDER_ERRORS: Final = Counter(
    "voicebot_tts_provider_errors_total", "Provider failures", ["provider", "code"]
)
FALLBACKS: Final = Counter(
    "voicebot_tts_fallbacks_total", "Sentences spoken by the offline voice after a failure"
)
LRU: Final = Counter("voicebot_tts_lru_total", "Dynamic sentence cache lookups", ["result"])
FIRST_FRAME: Final = Histogram(
    "voicebot_tts_first_frame_seconds",
    "Say event timestamp -> first audio.out message published",
    ["kind"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5),
)
AUDIO_OUT_MESSAGES: Final = Counter("voicebot_tts_audio_out_messages_total", "audio.out messages")
ACTIVE_CALLS: Final = Gauge("voicebot_tts_active_calls", "Calls this instance owns")
