"""Who may read the console, and what each may see. Pure: no I/O.

Two ways in, both from `.env`:
- `CONSOLE_USERS`: named people for HTTP Basic auth, `name:password[:role],...`. The role
  `supervisor` may see callers' full numbers (and download a call's export file, which holds
  them); `agent` (the default) sees them masked.
- `CONSOLE_TOKEN`: one shared secret with the `agent` role, for scripts (`Authorization:
  Bearer TOKEN`) and browsers (Basic auth, any user name, the token as the password).

With neither set the console binds to localhost only and serves loopback clients as agents.

Numbers leave the server masked for agents, however they travel: every string of every JSON
payload goes through `redact`, which masks anything that looks like a phone number (a run of
8 or more digits, spaces, dots or dashes between them allowed), so a number the caller said
in a transcript, a slot, or a phrase the bot read back is masked like the caller's own.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass, field
from typing import Any, Final

from events.env import ConfigError

AGENT: Final = "agent"
SUPERVISOR: Final = "supervisor"
ROLES: Final = (AGENT, SUPERVISOR)

_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
# A phone number as people write it: 8+ digits, a single separator allowed between them,
# optionally "+" first. Shorter digit runs (ticket numbers, durations) are left alone.
_NUMBER = re.compile(r"\+?\d(?:[ .\-]?\d){7,}")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")  # 2026-05-01: a date, not a number
# Keys whose values are identifiers, never text: a UUID's digit groups are not a number.
_ID_KEY = re.compile(r"(^|_)(id|url|seq)$")


@dataclass(frozen=True, slots=True)
class Viewer:
    name: str
    role: str

    @property
    def sees_numbers(self) -> bool:
        return self.role == SUPERVISOR


LOCAL_VIEWER: Final = Viewer("localhost", AGENT)


@dataclass(frozen=True, kw_only=True)
class Access:
    """The configured credentials (never in a repr: configs get logged)."""

    token: str | None = field(default=None, repr=False)
    users: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)  # name -> pw, role

    @property
    def open(self) -> bool:
        """Nothing configured: localhost only."""
        return self.token is None and not self.users

    def describe(self) -> str:
        if self.open:
            return "no CONSOLE_TOKEN or CONSOLE_USERS: localhost only, numbers masked"
        parts = []
        if self.users:
            supervisors = sum(1 for _, role in self.users.values() if role == SUPERVISOR)
            parts.append(f"{len(self.users)} user(s), {supervisors} supervisor(s)")
        if self.token is not None:
            parts.append("a token (agent)")
        return "Basic auth: " + " and ".join(parts)

    def check(self, authorization: str | None) -> Viewer | None:
        """The viewer an `Authorization` header names, or None (refused)."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return Viewer("token", AGENT) if self._is_token(value) else None
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        if not sep:
            return None
        user = self.users.get(name)
        # Compare with something even for an unknown name: the time taken says nothing.
        expected, role = user if user is not None else ("\0unknown", AGENT)
        if hmac.compare_digest(password.encode(), expected.encode()) and user is not None:
            return Viewer(name, role)
        if self._is_token(password):
            return Viewer(name or "token", AGENT)
        return None

    def _is_token(self, value: str) -> bool:
        return self.token is not None and hmac.compare_digest(value.encode(), self.token.encode())


def parse_users(text: str | None, variable: str = "CONSOLE_USERS") -> dict[str, tuple[str, str]]:
    """`alice:pw1:supervisor,bob:pw2` -> {name: (password, role)}."""
    users: dict[str, tuple[str, str]] = {}
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[1]:
            raise ConfigError(
                f"{variable}: expected name:password[:role], entry {len(users) + 1} is not"
            )
        name, password = parts[0], parts[1]
        role = parts[2].lower() if len(parts) == 3 else AGENT
        if not _NAME.match(name):
            raise ConfigError(f"{variable}: user name {name!r} must be letters, digits, . _ @ -")
        if role not in ROLES:
            raise ConfigError(
                f"{variable}: role of {name!r} must be one of {', '.join(ROLES)}, got {role!r}"
            )
        if name in users:
            raise ConfigError(f"{variable}: user {name!r} is listed twice")
        users[name] = (password, role)
    return users


def mask_number(number: str | None) -> str | None:
    """`0612345678` -> `06••••••78`: enough to tell two callers apart, not to call them."""
    if number is None:
        return None
    digits = [c for c in number if c.isdigit()]
    if len(digits) <= 4:
        return "•" * len(digits)
    head = "+" if number.lstrip().startswith("+") else ""
    return head + "".join(digits[:2]) + "•" * (len(digits) - 4) + "".join(digits[-2:])


def redact_text(text: str) -> str:
    def mask(m: re.Match[str]) -> str:
        found = m.group(0)
        return found if _DATE.match(found) else mask_number(found) or ""

    return _NUMBER.sub(mask, text)


def redact(value: Any, key: str = "") -> Any:
    """A JSON-able value with every phone number masked (identifier fields kept as they are)."""
    if isinstance(value, str):
        return value if _ID_KEY.search(key) else redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    return value


def for_viewer(value: Any, viewer: Viewer) -> Any:
    """What `viewer` may receive of a payload."""
    return value if viewer.sees_numbers else redact(value)
