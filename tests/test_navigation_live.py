"""Navigation through real servers: two uvicorn workers on redis-server and PostgreSQL, real
forms over HTTP, real WebSocket clients. Sidebar counts rise exactly once per message on every
worker, reading in one socket clears them in the others, a private room tells a non-member
nothing, and scroll-back on PostgreSQL gives every message once."""

import asyncio
import tempfile
from pathlib import Path

import httpx
import pytest

from .support.clients import RecordedSocket
from .support.server import cookie_header, room_create
from .support.services import node_env, postgres_server, redis_server
from .support.sockets import csrf_post, node_with_users

pytestmark = pytest.mark.server

USERS = ("alice", "bob", "carol")


class Site:
    def __init__(self, node, sessions: dict[str, httpx.Client]) -> None:
        self.node = node
        self.sessions = sessions
        self.pids = set(node.worker_pids())

    async def open(self, user: str, path: str) -> RecordedSocket:
        url = f"{self.node.ws_url}{path}"
        return await RecordedSocket.open(url, self.node.url, cookie_header(self.sessions[user]))

    async def on_every_worker(self, user: str, path: str, first: str) -> list[RecordedSocket]:
        """One socket of ``user`` on each worker, each past its first ``first`` frame."""
        sockets: dict[int, RecordedSocket] = {}
        for _ in range(60):
            if set(sockets) == self.pids:
                return list(sockets.values())
            socket = await self.open(user, path)
            await socket.next({first})
            if socket.pid in sockets:
                await socket.close()
            else:
                sockets[socket.pid] = socket
        raise AssertionError(f"{user}'s sockets landed on {sorted(sockets)} only")


@pytest.fixture(scope="module")
def site():
    with (
        redis_server() as redis,
        postgres_server() as postgres,
        tempfile.TemporaryDirectory(prefix="chat-nav-") as tmp,
    ):
        env = node_env(redis_url=redis.url, database_url=postgres.url)
        with node_with_users(env, Path(tmp), USERS) as (node, sessions):
            running = Site(node, sessions)
            assert len(running.pids) == 2
            yield running


def test_counts_rise_once_per_message_on_every_worker_and_clear_everywhere(site):
    alice, bob = site.sessions["alice"], site.sessions["bob"]
    public = room_create(alice, "Live lobby")
    response = csrf_post(alice, "/rooms/", {"name": "Live secret", "private": "on"})
    secret = response.headers["location"]
    assert csrf_post(alice, f"{secret}members/", {"username": "bob"}).status_code == 302
    assert bob.get(public).status_code == 200  # bob joins the public room
    slugs = {path: path.split("/")[2] for path in (public, secret)}

    async def scenario():
        sidebars = await site.on_every_worker("bob", "/ws/notifications/", "notification.unread")
        outsider = await site.open("carol", "/ws/notifications/")
        await outsider.next({"notification.unread"})
        writers = [
            await site.on_every_worker("alice", f"/ws/rooms/{slugs[p]}/?after=0", "synced")
            for p in (public, secret)
        ]
        for i in range(6):  # alternately from each worker, in both rooms
            for room_writers in writers:
                await room_writers[i % 2].send(type="message", body=f"news {i}")
        for sidebar in sidebars:
            frames = [await sidebar.next({"room.activity"}) for _ in range(12)]
            for slug in slugs.values():
                counts = [f["unread"] for f in frames if f["room"] == slug]
                # Each message counted once, whichever worker stored it (arrival order).
                assert counts == [1, 2, 3, 4, 5, 6], (sidebar.pid, slug, frames)

        reader = await site.open("bob", f"/ws/rooms/{slugs[secret]}/?after=0")
        stored = []
        while len(stored) < 6:
            stored.append(await reader.next({"message"}))
        stored.sort(key=lambda m: m["seq"])
        seqs = [m["seq"] for m in stored]
        await reader.send(type="read", seq=seqs[3])
        for sidebar in sidebars:
            frame = await sidebar.next({"read"})
            assert frame == {"type": "read", "room": slugs[secret], "seq": seqs[3], "unread": 2}
        # Nothing of either room reached carol, who is in neither.
        assert [f["type"] for f in outsider.frames] == ["notification.unread"]

        await reader.send(type="history", before=seqs[-1] + 1, limit=4)
        newest = await reader.next({"history"})
        await reader.send(type="history", before=newest["messages"][0]["seq"], limit=4)
        oldest = await reader.next({"history"})
        bodies = [m["body"] for m in oldest["messages"] + newest["messages"]]
        assert bodies == [m["body"] for m in stored] and oldest["more"] is False

        for socket in [*sidebars, outsider, reader, *writers[0], *writers[1]]:
            await socket.close()

    asyncio.run(scenario())
