"""The deployment files agree with the code: docker-compose hands each container only its own
secrets (as voicebot/secrets.py and setup.sh's units do), every service is health-checked on
its /health and scraped by Prometheus, Grafana's datasource is the one the dashboard names,
nats-auth.conf has every user the services log in as; and `docker compose config` passes
where a compose CLI is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from events.auth import LOGINS
from voicebot.processes import METRICS_PORTS
from voicebot.secrets import SECRET_VARIABLES, SERVICE_SECRETS

ROOT = Path(__file__).resolve().parents[2]
METRICS = {**{s: port for s, (_, port) in METRICS_PORTS.items()}, "archiver": 9096}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_each_container_gets_only_its_own_secrets() -> None:
    services = compose()["services"]
    expected = {**SERVICE_SECRETS, "streams": ("NATS_ADMIN_PASSWORD",)}
    for name, mine in expected.items():
        environment = services[name]["environment"]
        given = {k for k in SECRET_VARIABLES if str(environment.get(k, ""))}
        assert given == set(mine), name
        assert set(SECRET_VARIABLES) <= set(environment), f"{name}: a secret is not blanked"
        assert services[name]["env_file"] == ".env"


def test_services_are_health_checked_restarted_and_scraped() -> None:
    services = compose()["services"]
    scrape = yaml.safe_load((ROOT / "prometheus.yml").read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    for name, port in METRICS.items():
        service = services[name]
        assert f"http://127.0.0.1:{port}/health" in " ".join(service["healthcheck"]["test"])
        assert service["restart"] == "unless-stopped"
        assert service.get("user") is None  # the image's non-root user
        if name not in ("edge", "console"):  # one console: its page has a port of its own
            assert "ports" not in service, f"{name} must scale: no host port"
        sd = jobs[name]["dns_sd_configs"][0]
        assert sd["names"] == [name] and sd["port"] == port
    assert services["prometheus"]["ports"] == ["127.0.0.1:9095:9090"]
    assert {"nats", "postgres"} <= set(jobs)
    nats = services["nats"]
    assert "./nats-auth.conf:/etc/nats/nats-auth.conf:ro" in nats["volumes"]
    assert all(f"NATS_{u.upper()}_PASSWORD" in nats["environment"] for u in LOGINS.values())


def test_grafana_is_provisioned_with_the_dashboards_datasource() -> None:
    grafana = ROOT / "deploy" / "grafana"
    sources = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yml").read_text())
    uid = sources["datasources"][0]["uid"]
    dashboard = json.loads((grafana / "dashboards/voicebot.json").read_text())
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert used == {uid}
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "active calls",
        "outcome",
        "turn latency",
        "breakdown",
        "provider",
        "hold",
        "dead air",
        "pacing",
        "nats",
        "postgresql",
    ):
        assert topic in titles, topic


def test_nats_auth_names_every_user_and_keeps_audio_with_the_audio_services() -> None:
    text = (ROOT / "nats-auth.conf").read_text()
    users = dict(re.findall(r"\{ user: (\w+), password: \$(\w+)", text))
    assert users == {u: f"NATS_{u.upper()}_PASSWORD" for u in LOGINS.values()}
    blocks = dict(re.findall(r"\{ user: (\w+),.*?publish: \{ allow: \[(.*?)\]", text, re.S))
    assert "call.*.audio.out" in blocks["tts"] and "call.*.audio.in" in blocks["edge"]
    for user, allowed in blocks.items():
        if user != "tts":
            assert "audio.out" not in allowed, user
        if user != "brain":
            assert not re.search(r"\.(decision|say|control)\"", allowed), user
        if user in ("tracer", "archiver", "console"):
            assert '"call.' not in allowed, user


def test_docker_compose_config_passes(tmp_path: Path) -> None:
    cli = (
        ["docker", "compose"]
        if shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False, timeout=30
        ).returncode
        == 0
        else ["docker-compose"]
        if shutil.which("docker-compose")
        else None
    )
    if cli is None:
        pytest.skip("no docker compose CLI (apt-get install docker-compose)")
    for name in (
        "docker-compose.yml",
        "prometheus.yml",
        "nats.conf",
        "nats-auth.conf",
        "init_db.sql",
    ):
        shutil.copy(ROOT / name, tmp_path / name)
    missing = subprocess.run(
        [*cli, "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0 and "NATS_EDGE_PASSWORD" in missing.stderr
    needed = [
        *(f"NATS_{u.upper()}_PASSWORD" for u in LOGINS.values()),
        "DB_PASSWORD",
        "GRAFANA_PASSWORD",
        "PGADMIN_PASSWORD",
        "CONSOLE_TOKEN",
    ]
    (tmp_path / ".env").write_text("".join(f"{k}=x\n" for k in needed))
    result = subprocess.run(
        [*cli, "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("conf", ["nats.conf", "nats-cluster.conf"])
def test_nats_configurations_are_valid(conf: str) -> None:
    """nats-server itself checks them (-t), with every user's password in its environment, and
    refuses them when one is missing."""
    from voicebot.servers import nats_server_binary

    passwords = {f"NATS_{u.upper()}_PASSWORD": "x" for u in LOGINS.values()}
    passwords["NATS_ROUTE_PASSWORD"] = "x"
    check = [nats_server_binary(), "-t", "-c", str(ROOT / conf)]
    ok = subprocess.run(
        check, env=passwords, capture_output=True, text=True, timeout=30, check=False
    )
    assert ok.returncode == 0, ok.stderr
    del passwords["NATS_EDGE_PASSWORD"]
    missing = subprocess.run(
        check, env=passwords, capture_output=True, text=True, timeout=30, check=False
    )
    assert missing.returncode != 0 and "NATS_EDGE_PASSWORD" in missing.stderr
