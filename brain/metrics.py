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
HOLDS: Final = Counter(
    "voicebot_brain_holds_total", "Hold phrases the brain said while the LLM was slow"
)
ANSWER_SECONDS: Final = Histogram(
    "voicebot_brain_answer_seconds",
    "Final transcript published to the answer's say published (NLU, look-ups, the decision)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8),
)
DB_ERRORS: Final = Counter(
    "voicebot_brain_db_errors_total",
    "Database calls that failed or timed out (the dialog went on without them)",
    ["error"],
)
