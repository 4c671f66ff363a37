"""Start the real server (uvicorn) in a subprocess on a free port, and talk to it as a browser."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery-staple"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30, process: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


def require_program(program: str, package: str) -> str:
    """Path of ``program``; skips the test without it (fails under CI=true)."""
    path = shutil.which(program) or next(
        (p for p in (f"/usr/bin/{program}", f"/usr/sbin/{program}") if os.access(p, os.X_OK)),
        None,
    )
    if path:
        return path
    message = f"{program} is missing: install the Debian package {package}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def server_env(**extra: str) -> dict[str, str]:
    """Environment of a production-shaped server process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env.update(
        SECRET_KEY="live-server-test-secret",
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SETTINGS_MODULE="chatproject.settings",
        PYTHONUNBUFFERED="1",
        # Every test signs its users up from 127.0.0.1; the throttle's own tests lower this.
        SIGNUP_LIMIT_PER_HOUR="10000",
    )
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run a management command against the server's settings."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class LiveServer:
    """A server process that a test can stop and start again on the same port."""

    port: int
    env: dict[str, str]
    log_path: Path
    workers: int = 1
    process: subprocess.Popen | None = None
    args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start uvicorn and wait until it listens."""
        self.launch()
        wait_for_port(self.port, process=self.process)

    def launch(self) -> None:
        """Start uvicorn without waiting for anything."""
        command = [sys.executable, "-m", "uvicorn", "chatproject.asgi:application"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(self.workers), *self.args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def live_server(
    workers: int = 1, args: tuple[str, ...] = (), **env_extra: str
) -> Iterator[LiveServer]:
    """Migrate a fresh SQLite database and serve it with uvicorn (extra ``args``) until the
    block ends."""
    with tempfile.TemporaryDirectory(prefix="chat-live-") as tmp:
        env = server_env(SQLITE_PATH=str(Path(tmp) / "db.sqlite3"), **env_extra)
        manage(env, "migrate", "--noinput")
        server = LiveServer(free_port(), env, Path(tmp) / "server.log", workers, args=args)
        try:
            server.start()
            yield server
        finally:
            server.stop()


def _csrf(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    page.raise_for_status()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def signup(base_url: str, username: str, password: str = PASSWORD) -> httpx.Client:
    """Sign up through the real form; returns a client holding the logged-in session."""
    client = httpx.Client(base_url=base_url, timeout=20)
    token = _csrf(client, "/signup/")
    response = client.post(
        "/signup/",
        data={
            "csrfmiddlewaretoken": token,
            "username": username,
            "password1": password,
            "password2": password,
        },
        headers={"Referer": base_url + "/signup/"},
    )
    assert response.status_code == 302, response.text[:500]
    return client


def login(base_url: str, username: str, password: str = PASSWORD) -> httpx.Client:
    """Log in through the real form; returns a client holding the session."""
    client = httpx.Client(base_url=base_url, timeout=20)
    token = _csrf(client, "/login/")
    response = client.post(
        "/login/",
        data={"csrfmiddlewaretoken": token, "username": username, "password": password},
        headers={"Referer": base_url + "/login/"},
    )
    assert response.status_code == 302, response.text[:500]
    return client


def room_create(client: httpx.Client, name: str) -> str:
    """Create a room through the rooms form; returns its path."""
    token = _csrf(client, "/rooms/")
    response = client.post(
        "/rooms/",
        data={"csrfmiddlewaretoken": token, "name": name},
        headers={"Referer": str(client.base_url) + "/rooms/"},
    )
    assert response.status_code == 302, response.text[:500]
    return response.headers["location"]


def cookie_header(client: httpx.Client) -> str:
    """The ``Cookie`` header a browser would send with this client's session."""
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())
