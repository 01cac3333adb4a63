"""Which secret each process is handed, and the NATS passwords of a development run.

Every service gets the settings of `.env`, but of the secrets only its own: its NATS password,
the provider key it uses, the database for those that write it. `voicebot up` strips the rest
from each process's environment, as docker-compose.yml (`x-no-secrets`) and setup.sh's systemd
units (`UnsetEnvironment=`) do: a compromised edge does not hold the brain's NATS password.
tests/unit/test_deploy.py checks the three agree.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from events.auth import PASSWORD_VARIABLES, password_variable

# Every variable that holds a secret (a password, a key, a URL with a password in it).
SECRET_VARIABLES: Final = (
    *PASSWORD_VARIABLES,
    "DATABASE_URL",
    "DB_PASSWORD",
    "DEEPGRAM_API_KEY",
    "GROQ_API_KEY",
    "OPENAI_API_KEY",
    "API_TOKEN",
    "GRAFANA_PASSWORD",
    "PGADMIN_PASSWORD",
    "CONSOLE_TOKEN",
    "CONSOLE_USERS",
)

# The secrets each service needs; every other one is removed from its environment.
SERVICE_SECRETS: Final = {
    "edge": (password_variable("edge"), "API_TOKEN"),
    "stt_worker": (password_variable("stt"), "DEEPGRAM_API_KEY"),
    "brain": (password_variable("brain"), "GROQ_API_KEY", "DATABASE_URL"),
    "tts_worker": (password_variable("tts"), "OPENAI_API_KEY"),
    "archiver": (password_variable("archiver"), "DATABASE_URL"),
    "console": (password_variable("console"), "DATABASE_URL", "CONSOLE_TOKEN", "CONSOLE_USERS"),
}


def environment_for(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the secrets that are not `service`'s."""
    mine = set(SERVICE_SECRETS[service])
    return {k: v for k, v in environ.items() if k not in SECRET_VARIABLES or k in mine}


def nats_password() -> str:
    """A password nats-server can take from its environment: it parses the variable's value
    as a configuration value, so `5x...` fails ("expected a digit") and `#` starts a comment.
    Letters and digits, a letter first."""
    return "n" + secrets.token_hex(20)


def ensure_nats_passwords(path: Path) -> bool:
    """Give every NATS user of nats-auth.conf a password in os.environ: from the environment
    (.env) when set, else from `path` (generated once, mode 600, never printed). Returns
    whether `path` was written."""
    stored: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key in PASSWORD_VARIABLES and value:
                stored[key] = value
    missing = [v for v in PASSWORD_VARIABLES if not os.environ.get(v) and v not in stored]
    if missing:
        stored.update({v: nats_password() for v in missing})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("# NATS passwords of `voicebot up` (generated; .env wins when it sets one)\n")
            out.writelines(f"{k}={v}\n" for k, v in sorted(stored.items()))
        os.chmod(path, 0o600)
    for key, value in stored.items():
        if not os.environ.get(key):  # set and non-empty in the environment (.env) wins
            os.environ[key] = value
    return bool(missing)
