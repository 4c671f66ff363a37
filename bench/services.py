"""Private Redis and PostgreSQL servers for the production-shaped targets, on free ports."""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path

from .server import Service, tcp_ready
from .system import free_port


@contextmanager
def redis_server(log_dir: Path) -> Iterator[tuple[str, Service]]:
    """A throwaway redis-server (no persistence); yields its URL and its Service."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: install the Debian package redis-server")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    service = Service("redis", argv, ready=tcp_ready(port), log_path=log_dir / "redis.log")
    with service:
        yield f"redis://127.0.0.1:{port}/0", service


def _pg_bin(program: str) -> str:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{program}")) or [shutil.which(program) or ""]
    if not found[-1]:
        raise RuntimeError(f"{program} is missing: install the Debian package postgresql")
    return found[-1]


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: when we are root it runs as the ``postgres`` user."""
    return "postgres" if os.geteuid() == 0 else None


def _pg_ready(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def postgres_server(log_dir: Path, database: str = "chat") -> Iterator[tuple[str, Service]]:
    """A throwaway PostgreSQL cluster with one empty database; yields its URL and Service."""
    import psycopg

    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        data = Path(tmp) / "data"
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(tmp, user.pw_uid, user.pw_gid)
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
            user=_pg_user(),
        )
        port = free_port()
        argv = [_pg_bin("postgres"), "-D", str(data), "-p", str(port), "-k", tmp]
        argv += ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"]
        service = Service(
            "postgres",
            argv,
            ready=lambda: tcp_ready(port)() and _pg_ready(port),
            log_path=log_dir / "postgres.log",
            # SIGTERM is a "smart" shutdown that waits for clients; SIGINT does not.
            stop_signal=signal.SIGINT,
            user=_pg_user(),
        )
        with service:
            with psycopg.connect(
                f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True
            ) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            yield f"postgres://postgres@127.0.0.1:{port}/{database}", service
