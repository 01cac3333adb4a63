"""Language understanding: a caller utterance -> intent and slots (DESIGN.md "Dialog vocabulary").

`understand` is the offline, rule-based reading; `brain.providers.groq` gives the LLM one in the
same `Nlu` shape.
"""

from brain.nlu.rules import CATEGORIES, INTENTS, Nlu, understand

__all__ = ["CATEGORIES", "INTENTS", "Nlu", "understand"]
