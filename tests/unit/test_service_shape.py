"""Every service has the same start-up: a validated config whose errors name the variable
(exit code 2), /metrics and /health on its own port; and the edge's turn clock (pure)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from brain.config import BrainConfig
from console.config import ConsoleConfig
from edge.config import EdgeConfig
from edge.turn_clock import TurnClock
from events import runtime
from events.auth import Login
from events.env import ConfigError
from stt_worker.config import SttConfig
from tts_worker.config import TtsConfig
from voicebot.secrets import SECRET_VARIABLES, SERVICE_SECRETS, environment_for
from voicebot.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "edge": (EdgeConfig, "METRICS_PORT"),
    "stt_worker": (SttConfig, "STT_METRICS_PORT"),
    "brain": (BrainConfig, "BRAIN_METRICS_PORT"),
    "tts_worker": (TtsConfig, "TTS_METRICS_PORT"),
    "console": (ConsoleConfig, "CONSOLE_METRICS_PORT"),
}


@pytest.mark.parametrize("service", sorted(CONFIGS))
def test_configs_have_one_shape(service: str) -> None:
    cls, port_variable = CONFIGS[service]
    cfg = cls.from_env({})  # every setting has a default: nothing is required offline
    with pytest.raises(FrozenInstanceError):
        cfg.nats_url = "x"  # type: ignore[misc]
    assert {"nats_url", "nats_login", "metrics_port"} <= {f.name for f in fields(cls)}
    assert cfg.nats_login.anonymous
    with pytest.raises(ConfigError, match=port_variable):
        cls.from_env({port_variable: "70000"})
    with pytest.raises(ConfigError, match=port_variable):
        cls.from_env({port_variable: "nine"})


def test_passwords_reach_the_right_user_and_never_a_repr() -> None:
    user = {
        "edge": "EDGE",
        "stt_worker": "STT",
        "brain": "BRAIN",
        "tts_worker": "TTS",
        "console": "CONSOLE",
    }
    for service, (cls, _) in CONFIGS.items():
        cfg = cls.from_env({f"NATS_{user[service]}_PASSWORD": "s3cret", "API_TOKEN": "t0ken"})
        assert cfg.nats_login.password == "s3cret"
        assert "s3cret" not in repr(cfg) and "t0ken" not in repr(cfg)
    # A URL with its own credentials wins.
    login = Login(user="edge", password="p")
    assert login.connect_options("nats://a:b@h:4222") == {}
    assert login.connect_options("nats://h:4222") == {"user": "edge", "password": "p"}


def test_each_process_gets_only_its_own_secrets() -> None:
    everything = dict.fromkeys(SECRET_VARIABLES, "x") | {"LOG_LEVEL": "INFO"}
    edge = environment_for("edge", everything)
    assert set(edge) == {"LOG_LEVEL", "NATS_EDGE_PASSWORD", "API_TOKEN"}
    brain = environment_for("brain", everything)
    assert "DATABASE_URL" in brain and "NATS_EDGE_PASSWORD" not in brain
    assert "OPENAI_API_KEY" not in brain and "NATS_ADMIN_PASSWORD" not in brain
    for service, mine in SERVICE_SECRETS.items():
        assert set(environment_for(service, everything)) - {"LOG_LEVEL"} == set(mine)


@pytest.mark.parametrize(
    ("service", "variable", "value"),
    [
        ("edge", "AUDIO_IN_BATCH_MS", "30"),
        ("stt_worker", "STT_PROVIDER", "nope"),
        ("brain", "NO_INPUT_S", "soon"),
        ("tts_worker", "AUDIO_OUT_BATCH_MS", "500"),
        ("console", "CONSOLE_USERS", "ana"),
    ],
)
def test_a_configuration_error_exits_2_naming_the_variable(
    service: str, variable: str, value: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", service],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # no .env there
        env={**os.environ, "PYTHONPATH": str(ROOT), variable: value},
        check=False,
    )
    assert result.returncode == runtime.EXIT_CONFIG, result.stderr
    assert "configuration error" in result.stderr and variable in result.stderr


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_health_and_metrics_share_the_port() -> None:
    health = runtime.Health("svc")
    connected = [True]
    health.check("nats", lambda: connected[0])
    port = free_port()
    server = runtime.serve_metrics(port, health, host="127.0.0.1")
    assert server is not None
    try:
        status, body = _get(f"http://127.0.0.1:{port}/health")
        assert status == 503 and "starting" in json.loads(body)["problems"]
        health.is_ready = True
        status, body = _get(f"http://127.0.0.1:{port}/health")
        assert status == 200 and json.loads(body)["checks"] == {"nats": True}
        connected[0] = False
        status, body = _get(f"http://127.0.0.1:{port}/health")
        assert status == 503 and json.loads(body)["problems"] == ["nats failing"]
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"# HELP" in body
    finally:
        server.shutdown()
        server.server_close()
    assert runtime.serve_metrics(0, health) is None


def test_turn_clock() -> None:
    clock = TurnClock()
    clock.owe(10.0, "start")
    answered = clock.answer_started(11.5)
    assert answered is not None and answered.after == "start"
    assert answered.latency_s == pytest.approx(1.5) and answered.dead_air_s == pytest.approx(1.5)
    assert clock.answer_started(12.0) is None  # nothing owed any more
    # A hold phrase breaks the silence: dead air is measured to it, latency to the answer.
    clock.owe(20.0, "speech")
    assert clock.local_sound(22.0) == pytest.approx(2.0)
    assert clock.local_sound(24.0) is None  # once per turn
    answered = clock.answer_started(25.0)
    assert answered is not None and answered.latency_s == pytest.approx(5.0)
    assert answered.dead_air_s is None
    # A later line restarts the clock; a decision to say nothing is not a turn.
    clock.owe(30.0, "speech")
    clock.owe(31.0, "dtmf")
    answered = clock.answer_started(31.25)
    assert answered is not None and answered.after == "dtmf"
    assert answered.latency_s == pytest.approx(0.25)
    clock.owe(40.0, "speech")
    clock.nothing_owed()
    assert clock.answer_started(41.0) is None and clock.local_sound(41.0) is None


def test_a_stalled_loop_is_unhealthy() -> None:
    health = runtime.Health("svc")
    health.is_ready = True
    health._task = object()  # type: ignore[assignment]  # as if the beat had started
    health._beat = time.monotonic() - runtime.STALL_S - 1
    ok, body = health.report()
    assert not ok and body["problems"][0].startswith("event loop stalled")


def test_generated_nats_passwords_are_valid_nats_configuration_values() -> None:
    from voicebot.secrets import nats_password

    for _ in range(200):
        password = nats_password()
        assert password[0].isalpha() and password.isalnum() and len(password) >= 32
