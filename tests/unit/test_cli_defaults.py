"""What `voicebot archive`, `purge` and `export` use when DATABASE_URL is not set: the
PostgreSQL `voicebot up` embeds (as NATS_URL defaults to its nats-server), so a second terminal
beside `make run` needs no settings; a DATABASE_URL that is set always wins."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from voicebot.cli import _default_database_url


def test_without_database_url_the_embedded_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PG_PORT", "6543")
    # The whole environment back afterwards: delenv of an unset variable records nothing, and
    # the DATABASE_URL set here leaked into the session's PostgreSQL fixture when it came later.
    with mock.patch.dict(os.environ):
        _default_database_url()
        assert os.environ["DATABASE_URL"] == "postgresql://voicebot@127.0.0.1:6543/voicebot"


def test_a_set_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.example:5432/sav")
    _default_database_url()
    assert os.environ["DATABASE_URL"] == "postgresql://app@db.example:5432/sav"
