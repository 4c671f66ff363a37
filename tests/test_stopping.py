"""A stopping server process lets go of its sockets' shared state in one batch
(``realtime.stopping``): after a stop signal a socket's release is local, and the lifespan's
end leaves the hub's groups and uncounts the sockets, so nothing stays behind on Redis."""

import asyncio
import re
import signal

import pytest
from channels.layers import get_channel_layer
from redis.asyncio import Redis

from realtime import stopping as stopping_module
from realtime.hub import Hub
from realtime.limits import RedisLimits
from realtime.stopping import stop_signals_watch

from .support.server import room_create
from .support.services import redis_server
from .support.sockets import redis_node
from .test_fanout import Listener


def members(layer, group: str) -> set[str]:
    return set(layer.groups.get(group, {}))


@pytest.fixture
def stop_signalled(monkeypatch):
    monkeypatch.setattr(stopping_module, "_stopping", True)


@pytest.mark.asyncio
async def test_released_while_stopping_sockets_leave_the_fan_out_at_once_and_groups_at_the_end(
    stop_signalled,
):
    layer = get_channel_layer()
    hub, ann, ben = Hub(), Listener(), Listener()
    await hub.subscribe("room-1", ann)
    await hub.subscribe("room-1", ben)
    await hub.subscribe("user-1", ann)
    assert hub.channel in members(layer, "room-1")

    await hub.unsubscribe_all(["room-1", "user-1"], ann)
    await hub.unsubscribe_all(["room-1"], ben)

    # Out of the local fan-out at once; the process is still in the groups until it stops.
    assert hub.groups == {}
    assert hub.channel in members(layer, "room-1") and hub.channel in members(layer, "user-1")

    assert await hub.stop() == 3  # room-1, user-1 and the hub's own probe group
    assert hub.channel not in members(layer, "room-1")
    assert hub.channel not in members(layer, "user-1")
    await asyncio.sleep(0)
    assert all(t.cancelled() or t.done() for t in (hub._reader, hub._refresher, hub._watchdog))


@pytest.mark.asyncio
async def test_without_a_stop_signal_a_release_leaves_its_groups_itself():
    layer = get_channel_layer()
    hub, ann = Hub(), Listener()
    await hub.subscribe("room-2", ann)
    await hub.unsubscribe_all(["room-2"], ann)
    assert hub.channel not in members(layer, "room-2")
    await hub.stop()


@pytest.fixture
def redis_url():
    with redis_server() as server:
        yield server.url


@pytest.mark.asyncio
async def test_socket_counts_closed_while_stopping_are_uncounted_together_at_the_end(
    redis_url, settings, monkeypatch
):
    settings.REDIS_URL, settings.REDIS_CONNECTION, settings.REDIS_PREFIX = redis_url, {}, "stop"
    limits = RedisLimits()
    redis = Redis.from_url(redis_url)
    key = f"{limits.prefix}:sockets:"
    assert await limits.socket_open(1, "a") and await limits.socket_open(1, "b")
    assert await limits.socket_open(2, "c")

    monkeypatch.setattr(stopping_module, "_stopping", True)
    await limits.socket_close(1, "a")
    await limits.socket_close(2, "c")
    assert (await redis.zcard(f"{key}1"), await redis.zcard(f"{key}2")) == (2, 1)

    assert await limits.stop() == 3
    assert await redis.keys(f"{key}*") == []
    assert limits.local_sockets == {}
    await redis.aclose()
    await limits.redis.aclose()


def test_the_stop_signal_is_noted_before_the_servers_own_handler_runs(monkeypatch):
    called = []
    previous = {number: signal.getsignal(number) for number in stopping_module.STOP_SIGNALS}
    monkeypatch.setattr(stopping_module, "_stopping", False)
    try:
        signal.signal(signal.SIGTERM, lambda number, frame: called.append(number))
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's, not the server's
        assert stop_signals_watch()
        assert stop_signals_watch()  # a second watch wraps nothing twice
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the default action: left alone too
        stop_signals_watch()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
        assert not stopping_module.stopping()
        signal.raise_signal(signal.SIGTERM)
        assert stopping_module.stopping() and called == [signal.SIGTERM]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@pytest.mark.server
def test_a_node_stopped_with_sigterm_leaves_no_group_membership_or_socket_count_on_redis():
    with redis_node() as site:
        alice, bob = site.signup("alice"), site.signup("bob")
        path = room_create(bob, "Stopping")
        redis_url = site.node.env["REDIS_URL"]

        async def scenario():
            redis = Redis.from_url(redis_url)
            sockets = await site.open_on_every_worker(alice, path)
            sockets.append(await site.open_joined(bob, path))
            sockets.append(await site.open(bob, "/notifications/"))
            groups = await redis.keys("chat:group:*")
            counts = await redis.keys("chat:limit:sockets:*")
            assert groups and len(counts) == 2, (groups, counts)

            await asyncio.to_thread(site.node.stop)  # SIGTERM to the supervisor, as a deploy
            for socket in sockets:
                await socket.wait(lambda s=socket: s.close_code is not None, 10)
            assert {socket.close_code for socket in sockets} == {1012}
            assert await redis.keys("chat:group:*") == []
            assert await redis.keys("chat:limit:sockets:*") == []
            await redis.aclose()

        asyncio.run(scenario())
        log = site.node.log()
        assert "could not" not in log and "Traceback" not in log, log[-3000:]
        # Each worker noted the signal: its sockets were uncounted in its one batch at the end
        # (a release that uncounted itself would leave that batch nothing).
        batches = re.findall(r"let go of (\d+) groups and (\d+) socket counts at once", log)
        assert len(batches) == 2 and all(int(g) > 1 and int(c) > 0 for g, c in batches), batches
