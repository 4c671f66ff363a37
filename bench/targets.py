"""The servers under test: the product in two shapes and the two reference points in bench/."""

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .auth import login_sync
from .server import ROOT, Service, http_ready
from .services import postgres_server, redis_server
from .system import free_port

logger = logging.getLogger(__name__)

# The product's per-user rate limit (10 msg/s by default) would refuse the saturation steps;
# the benchmark measures fan-out, so it lifts the limit rather than counting refusals (each
# change still pays the check: a Redis round trip on the Redis targets, bench/guards.py).
PRODUCT_ENV = {
    "SECRET_KEY": "bench-secret-key-not-for-production",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SETTINGS_MODULE": "chatproject.settings",
    "CHAT_RATE_PER_SECOND": "100000",
    "CHAT_RATE_BURST": "100000",
    "LOG_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class Needs:
    """What the scenarios of a run need from a target: users (sockets) and rooms."""

    users: int
    rooms: int
    members_per_room: int = 0  # user i a member of room i // this (S5's sidebars)


@dataclass
class Running:
    """A started target: where to connect, as whom, and the processes to measure."""

    name: str
    port: int
    server: Service
    services: list[Service] = field(default_factory=list)
    rooms: list[str] | None = None  # None: any slug is a room
    cookies: list[str] = field(default_factory=list)
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    stores_messages: bool = False

    @property
    def base_url(self) -> str:
        """The HTTP origin of the server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_pattern(self) -> str:
        """The room socket URL with ``{room}`` to fill in."""
        return f"ws://127.0.0.1:{self.port}/ws/rooms/{{room}}/"

    def room_slugs(self, count: int) -> list[str]:
        """Slugs of ``count`` rooms that exist on this target."""
        if self.rooms is None:
            return [f"bench-{i}" for i in range(count)]
        if count > len(self.rooms):
            raise ValueError(f"{self.name} was seeded with {len(self.rooms)} rooms, not {count}")
        return self.rooms[:count]

    def headers_for(self, i: int) -> list[tuple[str, str]]:
        """Headers of the i-th client: its user's session cookie, if the target has users."""
        if not self.cookies:
            return []
        if i >= len(self.cookies):
            raise ValueError(f"{self.name} was seeded with {len(self.cookies)} users, not {i + 1}")
        return [("Cookie", self.cookies[i])]

    def restart(self) -> None:
        """Restart the web server, so each scenario starts from a fresh process."""
        self.server.stop()
        self.server.start()

    def room_seqs(self, count: int) -> dict[str, int]:
        """``last_seq`` of the first ``count`` rooms, by slug."""
        return self._seed("--room-seqs", "--rooms", str(count))["seqs"]

    def _seed(self, *args: str) -> dict:
        """Run ``bench.seed`` on this target's database; its JSON answer."""
        out = subprocess.run(
            [sys.executable, "-m", "bench.seed", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return json.loads(out.stdout)

    def messages_stored(self) -> int | None:
        """How many messages the target has stored (None if it stores none)."""
        if not self.stores_messages:
            return None
        return int(self._seed("--count-messages")["messages"])


def _uvicorn(app: str, port: int, workers: int, extra: list[str] | None = None) -> list[str]:
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    # As the README's production command line and `make serve` run it (every target alike):
    # clients that offer compression (the churn of P1, as browsers do) get none.
    argv += ["--ws-per-message-deflate", "false", "--ws-max-size", "65536"]
    return [*argv, "--timeout-graceful-shutdown", "3", *(extra or [])]


def _web(name: str, app: str, workers: int, env: dict[str, str], log_dir: Path) -> Service:
    port = free_port()
    return Service(
        name,
        _uvicorn(app, port, workers),
        ready=http_ready(f"http://127.0.0.1:{port}/"),
        log_path=log_dir / f"{name}.log",
        env=env,
        # With several workers uvicorn runs a supervisor plus one process per worker.
        processes=workers + 1 if workers > 1 else 1,
    )


def _port(service: Service) -> int:
    return int(service.argv[service.argv.index("--port") + 1])


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}


@contextmanager
def asgi(needs: Needs, log_dir: Path) -> Iterator[Running]:
    """The bare ASGI broadcast app on one uvicorn process: the ceiling."""
    with _web("asgi", "bench.baseline_asgi:app", 1, _base_env(), log_dir) as server:
        yield Running("asgi", _port(server), server)


@contextmanager
def tutorial_memory(needs: Needs, log_dir: Path) -> Iterator[Running]:
    """The tutorial-style peer on the in-memory layer, one process."""
    env = _base_env() | {"DJANGO_SETTINGS_MODULE": "bench.tutorial.settings"}
    with _web("tutorial-memory", "bench.tutorial.asgi:application", 1, env, log_dir) as server:
        yield Running("tutorial-memory", _port(server), server)


@contextmanager
def tutorial_redis(needs: Needs, log_dir: Path) -> Iterator[Running]:
    """The tutorial-style peer on channels_redis with two uvicorn workers."""
    with redis_server(log_dir) as (url, redis):
        env = _base_env() | {
            "DJANGO_SETTINGS_MODULE": "bench.tutorial.settings",
            "BENCH_TUTORIAL_REDIS_URL": url,
        }
        app = "bench.tutorial.asgi:application"
        with _web("tutorial-redis", app, 2, env, log_dir) as server:
            yield Running("tutorial-redis", _port(server), server, [redis], workers=2)


def _product_prepare(env: dict[str, str], needs: Needs, tmp: Path) -> dict:
    """Migrate the product's database and seed it with users, sessions and rooms."""
    seed = [
        "--users",
        str(needs.users),
        "--rooms",
        str(needs.rooms),
        "--out",
        str(tmp / "seed.json"),
        "--members-per-room",
        str(needs.members_per_room),
    ]
    for command in (
        [sys.executable, "manage.py", "migrate", "--noinput"],
        [sys.executable, "-m", "bench.seed", *seed],
    ):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[1:3])} failed:\n{done.stderr[-3000:]}")
    return json.loads((tmp / "seed.json").read_text())


def _product_login_check(running: Running, seed: dict) -> None:
    """Log the first two users in through the real login form and use those sessions."""
    credentials = [(name, seed["password"]) for name in seed["usernames"][:2]]
    running.cookies[: len(credentials)] = login_sync(running.base_url, credentials)


@contextmanager
def _product(
    name: str, needs: Needs, log_dir: Path, workers: int, extra_env: dict[str, str]
) -> Iterator[Running]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        env = _base_env() | PRODUCT_ENV | {"SQLITE_PATH": str(Path(tmp) / "db.sqlite3")} | extra_env
        seed = _product_prepare(env, needs, Path(tmp))
        app = "chatproject.asgi:application"
        with _web(name, app, workers, env, log_dir) as server:
            running = Running(
                name,
                _port(server),
                server,
                rooms=seed["rooms"],
                cookies=list(seed["cookies"]),
                workers=workers,
                env=env,
                stores_messages=True,
            )
            _product_login_check(running, seed)
            yield running


@contextmanager
def product_embedded(needs: Needs, log_dir: Path) -> Iterator[Running]:
    """The product on its embedded default: one process, in-memory layer, SQLite."""
    with _product("product-embedded", needs, log_dir, 1, {}) as running:
        yield running


@contextmanager
def product_prod(needs: Needs, log_dir: Path) -> Iterator[Running]:
    """The product in production shape: Redis, PostgreSQL and two uvicorn workers."""
    with ExitStack() as stack:
        redis_url, redis = stack.enter_context(redis_server(log_dir))
        database_url, postgres = stack.enter_context(postgres_server(log_dir))
        extra = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}
        running = stack.enter_context(_product("product-prod", needs, log_dir, 2, extra))
        running.services = [redis, postgres]
        yield running


TARGETS = {
    "asgi": asgi,
    "tutorial-memory": tutorial_memory,
    "tutorial-redis": tutorial_redis,
    "product-embedded": product_embedded,
    "product-prod": product_prod,
}
