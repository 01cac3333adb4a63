"""Prometheus metrics of the brain."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

DECISIONS: Final = Counter(
    "voicebot_brain_decisions_total", "Dialog decisions by transition", ["state_from", "state_to"]
)
NLU_SECONDS: Final = Histogram(
    "voicebot_brain_nlu_seconds",
    "Time to understand one utterance",
    ["source"],
    buckets=(0.001, 0.005, 0.02, 0.1, 0.25, 0.5, 1, 2, 4, 8),
)
NLU_FALLBACKS: Final = Counter(
    "voicebot_brain_nlu_fallbacks_total", "LLM failures answered by the rule-based NLU", ["error"]
)
