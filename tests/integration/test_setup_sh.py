"""setup.sh: its dry run (the plan, and not one secret in it), and a real run inside a throwaway
root. What is real there: the .env (mode 600), the database role, database and schema (on the
test PostgreSQL, through psql), the joined model and the phrase cache, the systemd unit files,
and the services started from those unit files until /ready answers, then `clean --purge`.
What is stubbed, and why: apt-get (it would install system-wide), ufw, useradd, chown (they
would change this shared machine's firewall and users: the test checks the rules asked for),
and systemctl (no systemd runs here: tests/integration/fake_systemctl.py starts the units'
ExecStart= with the units' environment instead, without their sandboxing and users).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from voicebot.secrets import SECRET_VARIABLES, SERVICE_SECRETS
from voicebot.servers import free_port, postgres_bindir

pytestmark = [pytest.mark.integration]

PROJECT = Path(__file__).resolve().parents[2]
SETUP = PROJECT / "setup.sh"
FAKE_SYSTEMCTL = Path(__file__).with_name("fake_systemctl.py")
SECRETS = {
    "DEEPGRAM_API_KEY": "dg-secret-0f3a9",
    "GROQ_API_KEY": "gsk-secret-77b1",
    "DB_PASSWORD": "db-secret-c4d2",
    "API_TOKEN": "token-secret-9e8f",
    "NATS_ADMIN_PASSWORD": "nats-admin-secret-1a2b",
}
STEPS = [
    "1. System packages",
    "2. Python environment",
    "3. Keys, passwords and the Asterisk address",
    "4. Settings and secrets",
    "5. PostgreSQL",
    "6. Offline model and phrase cache",
    "7. Firewall",
    "8. systemd units",
    "9. Start and check",
]


def bash(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.timeout(60)
def test_dry_run_prints_every_action_and_no_secret(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(SETUP, project / "setup.sh")
    env = {**os.environ, **SECRETS, "VOICEBOT_VENV": str(PROJECT / ".venv")}
    result = bash(str(project / "setup.sh"), "--dry-run", "--asterisk-ip", "192.0.2.5", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in STEPS:
        assert f"==> {step}" in out
    for action in (
        "apt-get install -y -q python3",
        f"write {project}/.env (mode 600)",
        "ufw allow proto tcp from 192.0.2.5 to any port 9090",
        "ufw deny proto tcp to any port 9090",
        "ufw allow proto tcp from 192.0.2.5 to any port 8080",
        "write /etc/systemd/system/voicebot-edge.service",
        "write /etc/systemd/system/voicebot-archive.timer",
        "systemctl enable --now voicebot.target",
        "wait for http://127.0.0.1:8080/ready",
        "wait for http://127.0.0.1:9094/health",
    ):
        assert action in out, action
    for value in SECRETS.values():
        assert value not in out and value not in result.stderr
    assert "PASSWORD '" not in out  # the role's password goes on psql's stdin only
    assert list(project.iterdir()) == [project / "setup.sh"]  # nothing written

    cleaning = bash(str(project / "setup.sh"), "clean", "--dry-run", "--purge", env=env)
    assert cleaning.returncode == 0, cleaning.stderr
    assert "systemctl disable --now voicebot.target" in cleaning.stdout
    assert "rm -f /etc/systemd/system/voicebot-brain.service" in cleaning.stdout


def test_setup_sh_is_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", str(SETUP)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except (urllib.error.URLError, OSError):
        return 0


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text().splitlines())
    return {k: v for k, sep, v in pairs if sep and not k.startswith("#")}


def _throwaway(tmp_path: Path, postgres_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """A copy of the project, a root for system files, stubs for what must not touch this
    machine; returns setup.sh's environment and the metrics ports the operator chose."""
    project, root, stubs = tmp_path / "project", tmp_path / "root", tmp_path / "stubs"
    for folder in (project, root, stubs):
        folder.mkdir()
    for name in ("setup.sh", "nats.conf", "nats-auth.conf", "init_db.sql"):
        shutil.copy(PROJECT / name, project / name)
    # `clean` removes the virtualenv: give it a link to ours, never ours.
    (tmp_path / "venv").symlink_to(PROJECT / ".venv")
    for tool in ("apt-get", "ufw", "useradd", "userdel", "chown"):
        (stubs / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "$FAKE_SYSTEMCTL_LOG"\n')
    (stubs / "systemctl").write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_SYSTEMCTL} "$@"\n')
    for tool in stubs.iterdir():
        tool.chmod(0o755)
    ports = {
        name: str(free_port())
        for name in (
            "METRICS_PORT",
            "STT_METRICS_PORT",
            "BRAIN_METRICS_PORT",
            "TTS_METRICS_PORT",
            "CONSOLE_METRICS_PORT",
        )
    }
    # The operator's own settings, which setup.sh must keep.
    (project / ".env").write_text(
        "".join(f"{k}={v}\n" for k, v in ports.items())
        + "EDGE_RT_PRIORITY=0\nSTT_PROVIDER=deepgram\nDEEPGRAM_URL=ws://127.0.0.1:9\n"
        + "TTS_POOL_WORKERS=1\nNLU_PROVIDER=rules\n"
        + f"CONSOLE_PORT={free_port()}\n"
    )
    pg = re.match(r"postgresql://(\w+)@([\d.]+):(\d+)/", postgres_url)
    assert pg is not None, postgres_url
    name = f"vb_setup_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **SECRETS,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "FAKE_SYSTEMCTL_LOG": str(tmp_path / "calls.log"),
        "VOICEBOT_ROOT": str(root),
        "VOICEBOT_VENV": str(tmp_path / "venv"),
        "VOICEBOT_PSQL": f"{postgres_bindir() / 'psql'} -h {pg[2]} -p {pg[3]} -U {pg[1]}",
        "DB_HOST": pg[2],
        "DB_PORT": pg[3],
        "DB_NAME": name,
        "DB_USER": name,
        "AUDIOSOCKET_PORT": str(free_port()),
        "HTTP_PORT": str(free_port()),
        "NATS_PORT": str(free_port()),
    }
    for variable in ("DATABASE_URL", "NATS_URL", "CACHE_DIR", "WHISPER_CACHE_DIR"):
        env.pop(variable, None)
    return env, ports


def _check_installation(tmp_path: Path, env: dict[str, str], ports: dict[str, str]) -> None:
    project, root = tmp_path / "project", tmp_path / "root"
    written = _read_env(project / ".env")
    # The services run from the unit files, each with only its own secrets.
    logs = "".join(p.read_text()[-1500:] for p in root.glob("*.log"))
    for port in ports.values():
        assert _get(f"http://127.0.0.1:{port}/health") == 200, (port, logs)
    units = root / "etc" / "systemd" / "system"
    for service, mine in SERVICE_SECRETS.items():
        unit = "archive" if service == "archiver" else service
        text = (units / f"voicebot-{unit}.service").read_text()
        found = re.search(r"^UnsetEnvironment=(.*)$", text, re.M)
        assert found is not None and set(found[1].split()) == set(SECRET_VARIABLES) - set(mine)
    assert (root / "var/lib/voicebot/cache/hold.raw").stat().st_size > 0
    assert (root / "var/lib/voicebot/models/whisper-base/model.sha256").exists()
    calls = (tmp_path / "calls.log").read_text()
    for port in (env["AUDIOSOCKET_PORT"], env["HTTP_PORT"]):
        allow = calls.index(f"ufw allow proto tcp from 127.0.0.1 to any port {port}")
        assert allow < calls.index(f"ufw deny proto tcp to any port {port}")
    assert calls.index("ufw allow OpenSSH") < calls.index("ufw --force enable")
    # The role and the schema, reached as the service would: its user, its password.
    url = (
        f"postgresql://{env['DB_USER']}:{written['DB_PASSWORD']}@{env['DB_HOST']}:{env['DB_PORT']}"
    )
    customers = subprocess.run(
        [
            str(postgres_bindir() / "psql"),
            f"{url}/{env['DB_NAME']}",
            "-tAc",
            "SELECT count(*) FROM customers",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert customers.returncode == 0 and int(customers.stdout) >= 1, customers.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_setup_for_real_in_a_throwaway_root(tmp_path: Path, postgres_url: str) -> None:
    env, ports = _throwaway(tmp_path, postgres_url)
    setup = str(tmp_path / "project" / "setup.sh")
    env_file = tmp_path / "project" / ".env"
    try:
        first = bash(setup, "--yes", "--asterisk-ip", "127.0.0.1", env=env, timeout=180)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "every service answers: ready" in first.stdout
        written = _read_env(env_file)
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        for value in [*SECRETS.values(), written["NATS_EDGE_PASSWORD"], written["DB_PASSWORD"]]:
            assert value not in first.stdout and value not in first.stderr
        assert written["ALLOWED_PEERS"] == "127.0.0.1" and written["API_TOKEN"]
        assert written["DEEPGRAM_API_KEY"] == SECRETS["DEEPGRAM_API_KEY"]
        assert all(written[k] == v for k, v in ports.items())  # the operator's settings kept
        assert len(written["NATS_STT_PASSWORD"]) >= 24 and written["NATS_STT_PASSWORD"].isalnum()
        assert written["NATS_STT_PASSWORD"][0].isalpha()  # nats-server parses it
        _check_installation(tmp_path, env, ports)

        # Idempotent: a second run keeps every secret and changes nothing that runs.
        second = bash(setup, "--yes", env={**env, **dict.fromkeys(SECRETS, "")}, timeout=120)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert _read_env(env_file) == written
    finally:
        cleaned = bash(setup, "clean", "--purge", "--yes", env=env)
        bash("-c", f"{sys.executable} {FAKE_SYSTEMCTL} stop", env=env)
    assert cleaned.returncode == 0, cleaned.stderr
    root = tmp_path / "root"
    assert not list((root / "etc/systemd/system").glob("voicebot*")), "clean left units"
    assert not env_file.exists() and not (root / "var/lib/voicebot").exists()
    assert (PROJECT / ".venv" / "bin" / "python").exists()  # only the link went
    assert _get(f"http://127.0.0.1:{env['HTTP_PORT']}/ready") == 0  # everything stopped
