"""Real outer services for tests: redis-server, PostgreSQL, nginx and uvicorn nodes.

Each starts on 127.0.0.1 and a free port, in a private temporary folder, and stops at the end.
A program that is missing skips the test with the Debian package to install (a failure when
CI=true, see ``require_program``).
"""

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .server import ROOT, LiveServer, free_port, manage, require_program, server_env, wait_for_port

NGINX_CONF = ROOT / "deploy" / "nginx.conf"


def _fail_or_skip(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _private_dir(prefix: str) -> Path:
    """A temporary folder under /tmp (not pytest's, whose parent is private to root).

    /tmp itself rather than $TMPDIR, which may sit in a folder the postgres user cannot enter.
    """
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None))


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; fields after its ")" are fixed.
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(text.split(" ", 1)[0]))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


# ---------------------------------------------------------------------------------------------
# Redis


@dataclass
class RedisServer:
    """A private redis-server that can be stopped and started again on the same port."""

    executable: str
    port: int
    workdir: Path
    process: subprocess.Popen | None = None
    options: tuple[str, ...] = ()  # more of redis-server's command line

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_socket(self) -> Path:
        return self.workdir / "redis.sock"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_socket}?db=0"

    def start(self) -> None:
        """Start redis-server (no persistence, as a restart should forget everything)."""
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        command += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        command += ["--maxclients", "10000", *self.options]
        with open(self.workdir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not answer PING within 20 s")

    def ping(self) -> bool:
        """Whether the server answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGKILL when ``kill``)."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down ``down_for`` seconds, and start again on the same port."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def log(self) -> str:
        return (self.workdir / "redis.log").read_text(errors="replace")


@contextmanager
def redis_server(*options: str) -> Iterator[RedisServer]:
    """A running private redis-server until the block ends (``options``: more of its command
    line, e.g. ``"--rename-command", "BZMPOP", ""`` for a server without a command)."""
    executable = require_program("redis-server", "redis-server")
    workdir = _private_dir("chat-redis-")
    server = RedisServer(executable, free_port(), workdir, options=options)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bindir() -> Path:
    """The folder of Debian's PostgreSQL programs (initdb and pg_ctl are not on PATH there)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(re.search(r"/(\d+)/bin", p).group(1)),
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    _fail_or_skip("PostgreSQL's initdb is missing: install the Debian package postgresql")
    raise AssertionError  # unreachable


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster (initdb into a temporary folder, run by pg_ctl)."""

    bindir: Path
    port: int
    workdir: Path
    database: str = "chat"

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        # PostgreSQL refuses to run as root (CI runs as root): run it as the postgres user.
        if os.geteuid() == 0:
            command = ("runuser", "-u", "postgres", "--", *command)
        return subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=timeout, cwd="/"
        )

    def init(self) -> None:
        """Create the cluster: trust authentication on loopback, nothing else listening."""
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-k {self.workdir}",
            # A throwaway cluster: durability buys nothing and costs seconds.
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            "-c max_connections=200",
        ]
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.workdir / "postgres.log"),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            "60",
            "start",
        )

    def create_database(self) -> None:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')

    def connections(self) -> int:
        """How many client connections the server holds to our database right now."""
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.database,)
            ).fetchone()
        return int(row[0])

    def stop(self) -> None:
        """Stop the server without waiting for clients to leave."""
        if (self.datadir / "postmaster.pid").exists():
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"
            )

    def log(self) -> str:
        path = self.workdir / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running private PostgreSQL with an empty database ``chat`` until the block ends."""
    bindir = postgres_bindir()
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _fail_or_skip("runuser is missing (needed to run PostgreSQL as root): install util-linux")
    workdir = _private_dir("chat-postgres-")
    server = PostgresServer(bindir, free_port(), workdir)
    try:
        server.init()
        server.start()
        server.create_database()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# nginx


def nginx_site_render(upstreams: list[str], port: int, conf: str | None = None) -> str:
    """``deploy/nginx.conf`` with its node addresses and listen port replaced for a test.

    Everything else (upgrade headers, timeouts, proxy settings) is used exactly as shipped.
    """
    text = NGINX_CONF.read_text() if conf is None else conf
    block = re.search(r"upstream\s+chat_nodes\s*\{(.*?)\n\}", text, re.S)
    assert block, "deploy/nginx.conf has no `upstream chat_nodes { ... }` block"
    servers = re.findall(r"^\s*server\s+\S+(\s[^;]*)?;", block.group(1), re.M)
    assert servers, "the chat_nodes upstream lists no server"
    params = servers[0] or ""
    body = re.sub(r"^\s*server\s+\S+(\s[^;]*)?;\n?", "", block.group(1), flags=re.M)
    lines = "".join(f"\n    server {address}{params};" for address in upstreams)
    text = text.replace(block.group(0), "upstream chat_nodes {" + lines + body + "\n}")
    text, count = re.subn(r"listen\s+80\s*;", f"listen 127.0.0.1:{port};", text)
    assert count == 1, "deploy/nginx.conf should have one `listen 80;`"
    return text


@dataclass
class Nginx:
    """A private nginx master serving the rendered site of ``deploy/nginx.conf``."""

    executable: str
    port: int
    workdir: Path
    upstreams: list[str]
    process: subprocess.Popen | None = None
    extra_http: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        site = self.workdir / "site.conf"
        site.write_text(nginx_site_render(self.upstreams, self.port))
        temp = [
            f"{kind}_temp_path {self.workdir / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ]
        main = [
            # As root nginx would hand its workers to an unprivileged user that cannot write
            # this private folder; the test keeps them as the current user.
            "user root;" if os.geteuid() == 0 else "",
            "daemon off;",
            "worker_processes 1;",
            f"pid {self.workdir / 'nginx.pid'};",
            f"error_log {self.workdir / 'error.log'} info;",
            "events { worker_connections 4096; }",
            "http {",
            f"  access_log {self.workdir / 'access.log'};",
            *(f"  {line}" for line in temp + self.extra_http),
            f"  include {site};",
            "}",
        ]
        path = self.workdir / "nginx.conf"
        path.write_text("\n".join(main) + "\n")
        return path

    def start(self) -> None:
        config = self.write_config()
        test = subprocess.run(
            [self.executable, "-t", "-p", str(self.workdir), "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert test.returncode == 0, f"nginx -t refused the rendered config:\n{test.stderr}"
        with open(self.workdir / "stderr.log", "ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "-p", str(self.workdir), "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            for pid in reversed(process_tree(self.process.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait(timeout=10)
        self.process = None

    def error_log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def nginx(upstreams: list[str]) -> Iterator[Nginx]:
    """nginx in front of ``upstreams`` (``host:port`` of each node) until the block ends."""
    executable = require_program("nginx", "nginx-light")
    workdir = _private_dir("chat-nginx-")
    proxy = Nginx(executable, free_port(), workdir, upstreams)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# uvicorn nodes


def node_env(*, redis_url: str = "", database_url: str = "", **extra: str) -> dict[str, str]:
    """Environment of one production node (see ``server_env``), with Redis and a database."""
    env = server_env(
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CHAT_SERVED_BY_HEADER="1",
        LOG_LEVEL="INFO",
        **extra,
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def migrate(env: dict[str, str]) -> None:
    """Create the schema in the database ``env`` points at."""
    manage(env, "migrate", "--noinput")


@dataclass
class Node(LiveServer):
    """One uvicorn with several workers; can be killed hard, every process of it at once."""

    log_offset: int = 0

    def start(self) -> None:
        """Start (or start again) and wait until it listens."""
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start()

    def new_log(self) -> str:
        """What the node logged since it was last started."""
        return self.log()[self.log_offset :]

    def pids(self) -> list[int]:
        """The supervisor's pid and its workers'."""
        return process_tree(self.process.pid) if self.process is not None else []

    def worker_pids(self) -> list[int]:
        """The pids of the workers started since the last start (from their log lines)."""
        return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", self.new_log())]

    def wait_for_workers(self, timeout: float = 60) -> list[int]:
        """Wait until every worker has started (each logs "Application startup complete")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"node exited:\n{self.new_log()[-3000:]}")
            if self.new_log().count("Application startup complete") >= self.workers:
                return self.worker_pids()
            time.sleep(0.1)
        raise TimeoutError(f"workers did not start within {timeout}s:\n{self.log()[-3000:]}")

    def kill_all(self) -> list[int]:
        """kill -9 the supervisor and every worker, as when a machine dies."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            # Workers are reaped by init once their parent is gone; zombies are dead enough.
            alive = [p for p in pids if _running(p)]
            if not alive:
                break
            time.sleep(0.05)
        self.process = None
        return pids

    def stop(self) -> None:
        """Stop gracefully, then make sure no worker outlives its supervisor."""
        pids = self.pids()
        super().stop()
        for pid in pids:
            if _running(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def node_start(env: dict[str, str], workdir: Path, name: str, workers: int = 2) -> Node:
    """Start ``uvicorn chatproject.asgi:application --workers N`` on a free port."""
    node = Node(free_port(), env, workdir / f"{name}.log", workers)
    node.start()
    return node


__all__ = [
    "ROOT",
    "Nginx",
    "Node",
    "PostgresServer",
    "RedisServer",
    "migrate",
    "nginx",
    "nginx_site_render",
    "node_env",
    "node_start",
    "postgres_server",
    "process_tree",
    "redis_server",
]
