"""Brain settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from events import env


@dataclass(frozen=True, kw_only=True)
class BrainConfig:
    nats_url: str
    database_url: str | None
    nlu_provider: str  # rules | groq
    groq_api_key: str | None
    groq_model: str
    groq_base_url: str | None
    llm_timeout_s: float
    hold_after_s: float  # say the hold phrase when understanding takes longer than this
    no_input_s: float
    max_call_s: float
    min_avg_logprob: float  # below: the transcript is not trusted (offline STT)
    max_no_speech_prob: float
    min_confidence: float  # provider confidence below which a transcript is not trusted
    solutions_path: Path | None
    max_calls: int
    metrics_port: int = 9093  # `python -m brain`; 0: not served

    @classmethod
    def from_env(cls) -> BrainConfig:
        key = env.get_opt("GROQ_API_KEY")
        provider = env.get_choice("NLU_PROVIDER", "auto", ("auto", "rules", "groq"))
        if provider == "auto":
            provider = "groq" if key else "rules"
        if provider == "groq" and not key:
            raise env.ConfigError("NLU_PROVIDER=groq needs GROQ_API_KEY")
        solutions = env.get_opt("SOLUTIONS_PATH")
        return cls(
            nats_url=env.get_str("NATS_URL", "nats://127.0.0.1:4222"),
            database_url=env.get_opt("DATABASE_URL"),
            nlu_provider=provider,
            groq_api_key=key,
            groq_model=env.get_str("GROQ_MODEL", "llama-3.3-70b-versatile"),
            groq_base_url=env.get_opt("GROQ_BASE_URL"),
            llm_timeout_s=env.get_float("LLM_TIMEOUT_S", 4.0),
            hold_after_s=env.get_float("HOLD_AFTER_S", 1.2),
            no_input_s=env.get_float("NO_INPUT_S", 8.0, minimum=1.0),
            max_call_s=env.get_float("MAX_CALL_S", 600.0, minimum=10.0),
            min_avg_logprob=env.get_float("STT_MIN_AVG_LOGPROB", -1.5, minimum=-100.0),
            max_no_speech_prob=env.get_float("STT_MAX_NO_SPEECH_PROB", 0.7),
            min_confidence=env.get_float("STT_MIN_CONFIDENCE", 0.2),
            solutions_path=Path(solutions) if solutions else None,
            max_calls=env.get_int("MAX_CONCURRENT_CALLS", 20, minimum=1) * 2,
            metrics_port=env.get_int("BRAIN_METRICS_PORT", 9093, minimum=0),
        )
