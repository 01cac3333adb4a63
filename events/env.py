"""Reading settings from the environment and `.env`, with errors that name the variable.

Every service's `config.py` builds its frozen settings through these; nothing else reads
`os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    pass


def load_dotenv(path: Path | str = ".env") -> dict[str, str]:
    """Read KEY=VALUE lines into os.environ without overriding what is already set."""
    p = Path(path)
    loaded: dict[str, str] = {}
    if not p.is_file():
        return loaded
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{p}:{n}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        key = key.strip()
        loaded[key] = value
        os.environ.setdefault(key, value)
    return loaded


def _raw(name: str, env: Mapping[str, str] | None) -> str | None:
    value = (env if env is not None else os.environ).get(name)
    return value if value not in (None, "") else None


def get_str(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    value = _raw(name, env)
    return default if value is None else value


def get_opt(name: str, env: Mapping[str, str] | None = None) -> str | None:
    return _raw(name, env)


def get_int(
    name: str, default: int, env: Mapping[str, str] | None = None, *, minimum: int | None = None
) -> int:
    value = _raw(name, env)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {n}")
    return n


def get_float(
    name: str, default: float, env: Mapping[str, str] | None = None, *, minimum: float = 0.0
) -> float:
    value = _raw(name, env)
    if value is None:
        return default
    try:
        x = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if x < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {x}")
    return x


def get_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, env)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def get_choice(
    name: str, default: str, choices: tuple[str, ...], env: Mapping[str, str] | None = None
) -> str:
    value = get_str(name, default, env).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def get_list(name: str, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    value = _raw(name, env)
    if value is None:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())
