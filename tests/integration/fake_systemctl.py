#!/usr/bin/env python3
"""A stand-in for `systemctl` in setup.sh's test (there is no systemd to talk to here).

It does what setup.sh asks of systemd with the unit files setup.sh wrote under
$VOICEBOT_ROOT/etc/systemd/system, so that those files are what really starts the services:
`enable --now voicebot.target` starts every service the target wants, in dependency order
(`After=`), each with the environment its unit gives it (EnvironmentFile= minus
UnsetEnvironment=, plus Environment=), its WorkingDirectory= and its ExecStart=; a oneshot is
waited for and must succeed. `disable --now` / `stop` end them. What it does not do: users
(DynamicUser=, User=), sandboxing (ProtectSystem=...), restarts, timers. Every call is logged
to $FAKE_SYSTEMCTL_LOG.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ["VOICEBOT_ROOT"])
UNITS = ROOT / "etc" / "systemd" / "system"
STATE = ROOT / "fake-systemd.json"


def parse(path: Path) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        keys.setdefault(key, []).append(value)
    return keys


def environment(unit: dict[str, list[str]]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "PYTHONPATH")}
    for file in unit.get("EnvironmentFile", []):
        for line in Path(file).read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                env[key.strip()] = value
    for assignment in unit.get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value
    for names in unit.get("UnsetEnvironment", []):
        for name in names.split():
            env.pop(name, None)
    return env


def order(names: list[str]) -> list[str]:
    done: list[str] = []

    def visit(name: str) -> None:
        if name in done or not (UNITS / name).exists():
            return
        for after in " ".join(parse(UNITS / name).get("After", [])).split():
            if after in names:
                visit(after)
        done.append(name)

    for name in names:
        visit(name)
    return done


def start(target: str) -> None:
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    wanted = " ".join(parse(UNITS / target).get("Wants", [])).split()
    for name in order([w for w in wanted if w.endswith(".service")]):
        unit = parse(UNITS / name)
        pid = state.get(name)
        if pid and Path(f"/proc/{pid}").exists():
            continue  # already running: enable --now again is a no-op
        argv = shlex.split(unit["ExecStart"][0])
        cwd = unit.get("WorkingDirectory", ["/"])[0]
        log = open(ROOT / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        if unit.get("Type", ["simple"])[0] == "oneshot":
            code = subprocess.run(
                argv,
                env=environment(unit),
                cwd=cwd,
                stdout=log,
                stderr=log,
                timeout=60,
                check=False,
            ).returncode
            if code != 0:
                sys.exit(f"{name} failed with code {code}")
            continue
        proc = subprocess.Popen(
            argv, env=environment(unit), cwd=cwd, stdout=log, stderr=log, start_new_session=True
        )
        state[name] = proc.pid
        STATE.write_text(json.dumps(state))
        if "-p" in argv:  # a server (NATS): what is started after it needs it listening
            _wait_port(int(argv[argv.index("-p") + 1]), proc)
        if proc.poll() is not None:
            sys.exit(f"{name} exited at once with code {proc.returncode}")


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)


def stop() -> None:
    """SIGTERM each service, then SIGKILL whatever is left of its process group (its pool
    processes), as systemd's KillMode=control-group does."""
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    for pid in reversed(list(state.values())):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(150):
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # started with start_new_session: pgid == pid
    STATE.unlink(missing_ok=True)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def main(args: list[str]) -> int:
    with open(os.environ["FAKE_SYSTEMCTL_LOG"], "a", encoding="utf-8") as out:
        out.write("systemctl " + " ".join(args) + "\n")
    match args:
        case ["enable", "--now", *units] | ["start", *units]:
            for unit in units:
                if unit.endswith(".target"):
                    start(unit)
        case ["disable", "--now", *_] | ["stop", *_]:
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
