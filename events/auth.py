"""Who a process is on NATS: one user per service, as `nats.conf` declares them.

Each service connects as its own user, whose permissions allow only what the contract lets it
publish (the edge cannot publish a decision, the brain no audio, ...). The password of user
`<login>` is read from `NATS_<LOGIN>_PASSWORD`; unset, the process connects without credentials
(a development server started without `nats.conf`). A NATS_URL that carries `user:password@`
itself wins over both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from events import env

# Service (or tool) -> its user in nats.conf.
LOGINS: Final = {
    "edge": "edge",
    "stt_worker": "stt",
    "brain": "brain",
    "tts_worker": "tts",
    "archiver": "archiver",
    "tracer": "tracer",  # voicebot trace, sub, call, export: reads only
    "console": "console",  # the call console (python -m console): reads only
    "admin": "admin",  # creates the streams and claim consumers; voicebot replay, setup
}


def password_variable(login: str) -> str:
    return f"NATS_{login.upper()}_PASSWORD"


PASSWORD_VARIABLES: Final = tuple(password_variable(u) for u in LOGINS.values())


@dataclass(frozen=True, kw_only=True)
class Login:
    """A NATS user and its password (never in a repr: configs get logged)."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> Login:
        user = LOGINS[service]
        password = env.get_opt(password_variable(user), environ)
        return cls(user=user, password=password) if password else cls()

    @property
    def anonymous(self) -> bool:
        return self.password is None

    def connect_options(self, url: str) -> dict[str, str]:
        """`user`/`password` for nats.connect, unless anonymous or the URL carries its own."""
        if self.anonymous or self.user is None or self.password is None or "@" in url:
            return {}
        return {"user": self.user, "password": self.password}
