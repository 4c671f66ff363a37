"""Real sockets of several sessions on a node of several uvicorn workers (tests of socket limits
and of sockets ending with their session)."""

import concurrent.futures
import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from .clients import RecordedSocket
from .server import cookie_header, login, manage, signup
from .services import Node, node_env, node_start, redis_server


def csrf_post(client: httpx.Client, path: str, data: dict[str, str], page: str = "/rooms/"):
    """POST ``data`` to ``path`` with the CSRF token of a form on ``page``, as a browser does."""
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get(page).text)
    assert token, f"no form on {page}"
    return client.post(
        path,
        data={"csrfmiddlewaretoken": token.group(1), **data},
        headers={"Referer": str(client.base_url) + page},
    )


class Sockets:
    """Opens sockets on ``node`` with the cookie of an ``httpx`` session."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.pids = set(node.worker_pids())

    def signup(self, username: str) -> httpx.Client:
        return signup(self.node.url, username)

    def login(self, username: str, password: str | None = None) -> httpx.Client:
        return login(self.node.url, username, *([password] if password else []))

    async def open(
        self, session: httpx.Client, path: str, origin: str | None = None
    ) -> RecordedSocket:
        """A socket of ``session`` (a room path ``/rooms/<slug>/`` or ``/notifications/``)."""
        url = f"{self.node.ws_url}/ws{path}"
        return await RecordedSocket.open(url, origin or self.node.url, cookie_header(session))

    async def open_joined(self, session: httpx.Client, path: str) -> RecordedSocket:
        """A room socket that has joined its room (its catch-up answered)."""
        socket = await self.open(session, f"{path}?after=0")
        await socket.next({"synced"})
        return socket

    async def open_on_every_worker(self, session: httpx.Client, path: str) -> list[RecordedSocket]:
        """Room sockets of ``session`` until every worker serves one (bounded tries)."""
        sockets: list[RecordedSocket] = []
        for _ in range(40):
            if {s.pid for s in sockets} == self.pids:
                return sockets
            socket = await self.open_joined(session, path)
            if socket.pid in {s.pid for s in sockets}:
                await socket.close()
            else:
                sockets.append(socket)
        raise AssertionError(f"sockets landed on {[s.pid for s in sockets]} only")


@contextlib.contextmanager
def redis_node(workers: int = 2, **env: str) -> Iterator[Sockets]:
    """A node of ``workers`` uvicorn processes on a real redis-server and a fresh SQLite."""
    with redis_server() as redis, tempfile.TemporaryDirectory(prefix="chat-sockets-") as tmp:
        environment = node_env(
            redis_url=redis.url, SQLITE_PATH=str(Path(tmp) / "db.sqlite3"), **env
        )
        manage(environment, "migrate", "--noinput")
        node = node_start(environment, Path(tmp), "node", workers=workers)
        try:
            node.wait_for_workers()
            yield Sockets(node)
        finally:
            node.stop()


@contextlib.contextmanager
def node_with_users(
    env: dict[str, str], tmp: Path, users: tuple[str, ...], workers: int = 2
) -> Iterator[tuple[Node, dict[str, httpx.Client]]]:
    """Migrate the database of ``env``, serve it with ``workers`` uvicorn processes, and sign
    ``users`` up (in parallel); yields the node and each user's logged-in client."""
    manage(env, "migrate", "--noinput")
    node = node_start(env, tmp, "node", workers=workers)
    try:
        node.wait_for_workers()
        with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
            clients = pool.map(lambda user: signup(node.url, user), users)
            yield node, dict(zip(users, clients, strict=True))
    finally:
        node.stop()
