"""The command, run as its own process, reaches sockets on every worker through Redis."""

import asyncio
import json
import tempfile
from pathlib import Path

import pytest
import websockets

from .support.server import cookie_header, manage, signup
from .support.services import node_env, node_start, redis_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def node():
    with redis_server() as server, tempfile.TemporaryDirectory(prefix="chat-notify-") as tmp:
        env = node_env(redis_url=server.url, SQLITE_PATH=str(Path(tmp) / "db.sqlite3"))
        manage(env, "migrate", "--noinput")
        running = node_start(env, Path(tmp), "node", workers=2)
        try:
            running.wait_for_workers()
            running.sessions = [signup(running.url, name) for name in ("ann", "ben")]
            yield running
        finally:
            running.stop()


async def open_sockets(node, per_user: int) -> list[tuple[str, int, object]]:
    """Notification sockets for each user until both workers serve some: (user, pid, socket)."""
    opened = []
    workers = set(node.worker_pids())
    for _ in range(20):  # bounded: uvicorn spreads connections over its workers
        for name, session in zip(("ann", "ben"), node.sessions, strict=True):
            socket = await websockets.connect(
                f"{node.ws_url}/ws/notifications/",
                additional_headers={"Cookie": cookie_header(session)},
                origin=node.url,
                open_timeout=10,
            )
            pid = int(socket.response.headers["X-Served-By"].rsplit(":", 1)[1])
            assert json.loads(await asyncio.wait_for(socket.recv(), 10)) == {
                "type": "notification.unread",
                "unread": 0,
            }
            opened.append((name, pid, socket))
        served = {pid for _, pid, _ in opened}
        if served == workers and len(opened) >= 2 * per_user:
            return opened
    raise AssertionError(f"sockets landed on {served}, workers are {workers}")


def test_the_command_reaches_sockets_on_every_worker_and_only_its_audience(node):
    async def scenario():
        sockets = await open_sockets(node, per_user=3)
        try:
            done = await asyncio.to_thread(
                manage, node.env, "notifications", "Shipping <today>", "--link", "/rooms/"
            )
            assert "sent to 2 users" in done.stdout
            assert "in-memory" not in done.stderr
            for name, pid, socket in sockets:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                assert (frame["type"], frame["text"], frame["unread"]) == (
                    "notification",
                    "Shipping <today>",
                    1,
                ), (name, pid)

            await asyncio.to_thread(manage, node.env, "notifications", "Ann only", "--users", "ann")
            for name, pid, socket in sockets:
                if name == "ann":
                    frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                    assert (frame["text"], frame["unread"]) == ("Ann only", 2), pid
            # Ben's sockets got nothing more (each frame would have arrived by now).
            for name, _, socket in sockets:
                if name == "ben":
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(socket.recv(), 0.5)
        finally:
            await asyncio.gather(*(socket.close() for _, _, socket in sockets))

    asyncio.run(scenario())
