"""One node of four uvicorn workers on SQLite and a real redis-server: the simplest scale-out.

Guards the two traps of redis-py 8 with channels_redis 4.3 measured in docs/scaling.md: a 5 s
socket timeout equal to the layer's 5 s blocking read (quiet readers died), and a connection
pool that fails at 100 connections instead of waiting (bursts of joins and leaves failed).
"""

import asyncio
import json
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import redis
import websockets

from .support.clients import ChatClient
from .support.server import cookie_header, manage, signup
from .support.services import node_env, node_start, redis_server

pytestmark = pytest.mark.server

USERS = 4
WORKERS = 4


@pytest.fixture(scope="module")
def node():
    with redis_server() as server, tempfile.TemporaryDirectory(prefix="chat-scaling-") as tmp:
        # A few users hold hundreds of sockets here: above the per-user cap (issue 13).
        env = node_env(
            redis_url=server.url,
            SQLITE_PATH=str(Path(tmp) / "db.sqlite3"),
            CHAT_SOCKETS_PER_USER="1000",
        )
        manage(env, "migrate", "--noinput")
        running = node_start(env, Path(tmp), "node", workers=WORKERS)
        try:
            running.wait_for_workers()
            running.redis = server
            running.sessions = [signup(running.url, f"user{i}") for i in range(USERS)]
            yield running
        finally:
            running.stop()


def rooms_create(node, count: int) -> list[str]:
    """Create ``count`` rooms in the node's database; returns their paths."""
    script = (
        "from rooms.models import Room\n"
        f"Room.objects.bulk_create(Room(name=f'burst {{i}}', slug=f'burst-{{i}}') "
        f"for i in range({count}))\n"
    )
    manage(node.env, "shell", "-c", script)
    return [f"/rooms/burst-{i}/" for i in range(count)]


QUIET_RECEIVE = textwrap.dedent(
    """
    import asyncio, time
    from channels.layers import get_channel_layer
    from redis.exceptions import RedisError

    async def main():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        started = time.monotonic()
        try:
            await asyncio.wait_for(layer.receive(channel), 12)
        except RedisError as error:
            print("failed", type(error).__name__, round(time.monotonic() - started, 1))
        except TimeoutError:
            print("quiet", round(time.monotonic() - started, 1))

    asyncio.run(main())
    """
)


def test_a_quiet_room_for_30_seconds_drops_no_socket(node):
    path = "/rooms/quiet/"
    script = "from rooms.models import Room; Room(name='quiet', slug='quiet').save()"
    manage(node.env, "shell", "-c", script)

    async def scenario():
        clients = [
            ChatClient(
                name=f"idle-{i}",
                ws_base=node.url.replace("http", "ws"),
                origin=node.url,
                path=path,
                cookie=cookie_header(node.sessions[i % USERS]),
                reconnect=False,
            )
            for i in range(100)
        ]
        await asyncio.gather(*(client.start() for client in clients))
        # A layer reader on its own, with nothing else on the channel: the hubs' probes keep
        # theirs busy, so this is the bare 12 s quiet read that redis-py 8's defaults broke
        # (with either layer the settings can choose).
        quiet_reads = [
            asyncio.to_thread(
                manage, {**node.env, "REDIS_CHANNEL_LAYER": kind}, "shell", "-c", QUIET_RECEIVE
            )
            for kind in ("core", "pubsub")
        ]
        *reads, _ = await asyncio.gather(*quiet_reads, asyncio.sleep(30))
        closed = [c.name for c in clients if c._task.done()]
        await clients[0].send("still there?")
        arrived = await asyncio.gather(*(c.wait_for(1, timeout=10) for c in clients))
        await asyncio.gather(*(c.close() for c in clients))
        return [read.stdout.strip().splitlines()[-1] for read in reads], closed, arrived

    quiet_reads, closed, arrived = asyncio.run(scenario())
    assert quiet_reads == ["quiet 12.0", "quiet 12.0"]
    assert closed == []
    assert all(arrived)
    log = node.new_log()
    assert "receive failed" not in log, log[-3000:]
    assert "live path recovered" not in log, log[-3000:]


def test_a_burst_of_500_connects_and_disconnects_fails_none(node):
    paths = rooms_create(node, 250)
    ws_base = node.url.replace("http", "ws")
    cookies = [cookie_header(session) for session in node.sessions]

    async def connect(i: int):
        socket = await websockets.connect(
            f"{ws_base}/ws{paths[i % len(paths)]}?after=0",
            additional_headers={"Cookie": cookies[i % USERS]},
            origin=node.url,
            open_timeout=60,
        )
        while json.loads(await asyncio.wait_for(socket.recv(), 60))["type"] != "synced":
            pass
        return socket

    async def scenario():
        results = await asyncio.gather(*(connect(i) for i in range(500)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        sockets = [r for r in results if not isinstance(r, BaseException)]
        await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
        return failures, sockets

    failures, sockets = asyncio.run(scenario())
    assert failures == [], failures[:5]
    assert len(sockets) == 500
    # Every worker left every room group with its last socket: no stale member is left in
    # Redis to receive the rooms' traffic (core layer: group keys; pub/sub: subscriptions).
    client = redis.Redis.from_url(node.redis.url)
    try:
        for _ in range(50):
            stale = client.keys("chat:group:room-*") + client.pubsub_channels("chat__group__room-*")
            if not stale:
                break
            time.sleep(0.2)
        assert stale == [], f"{len(stale)} room groups still have members"
        probes = client.keys("chat:group:hub-probe.*") + client.pubsub_channels(
            "chat__group__hub-probe.*"
        )
        assert len(probes) == WORKERS, "every worker's hub should still be in its probe group"
    finally:
        client.close()
    log = node.new_log()
    assert "MaxConnectionsError" not in log, log[-3000:]
    assert "could not leave group" not in log, log[-3000:]
    assert " 500" not in log and "Exception in ASGI application" not in log, log[-3000:]


STALE_SEND = textwrap.dedent(
    """
    import asyncio
    import redis
    from django.conf import settings
    from channels.layers import get_channel_layer

    async def main():
        layer = get_channel_layer()
        await layer.group_send("room-1", {"type": "hub.frame"})
        # Drop every connection, as a Redis restart does: the pool's one is now stale.
        killer = redis.Redis.from_url(settings.REDIS_URL)
        killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        killer.close()
        try:
            await layer.group_send("room-1", {"type": "hub.frame"})
        except Exception as error:
            print("failed", type(error).__name__)
        else:
            print("sent")

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("kind", ["core", "pubsub"])
def test_a_send_on_a_connection_left_stale_by_redis_goes_through(kind):
    with redis_server() as server, tempfile.TemporaryDirectory(prefix="chat-stale-") as tmp:
        env = node_env(
            redis_url=server.url,
            SQLITE_PATH=str(Path(tmp) / "db.sqlite3"),
            REDIS_CHANNEL_LAYER=kind,
        )
        output = manage(env, "shell", "-c", STALE_SEND).stdout.strip().splitlines()[-1]
    assert output == "sent"
