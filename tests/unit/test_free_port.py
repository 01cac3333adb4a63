"""free_port: a port no outgoing connection and no other process can take before it is bound."""

from __future__ import annotations

import subprocess
import sys

from voicebot import servers


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    low = servers._ephemeral_low()
    ports = [servers.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(servers._LOWEST_PORT <= p < low for p in ports)


def test_a_port_reserved_by_another_process_is_not_handed_out() -> None:
    """A second process asking for ports while this one holds its reservations gets none of them."""
    mine = {servers.free_port() for _ in range(20)}
    code = (
        "import sys; from voicebot import servers\n"
        f"mine = {sorted(mine)!r}\n"
        "for port in mine:\n"
        "    assert not servers._reserve(port), port\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
