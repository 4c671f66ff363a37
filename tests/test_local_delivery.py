"""A process's own events reach its own sockets at once, from its hub, and never a second time
through the layer; every other process gets them through the layer, once.

On the embedded default's in-memory layer, on the project's Redis layer (a real redis-server),
and on the layers that cannot leave a member out (the project's over several Redis hosts,
channels_redis' pub/sub layer): there the layer brings a process its own events, as before,
and they still arrive once.
"""

import asyncio
import uuid
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer

from realtime import events
from realtime.hub import get_hub
from realtime.layers import RedisChannelLayer

from .support.services import redis_server

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as server:
        yield server.url


@pytest.fixture(scope="module")
def second_redis_url():
    with redis_server() as server:
        yield server.url


# The layers that leave the sending process out, so its sockets get its events at once.
AT_ONCE = {"in-memory", "redis"}


@pytest.fixture(params=["in-memory", "redis", "redis-sharded", "pubsub"])
def layers(request, settings):
    """This process's layer (the settings') and a layer of another process on the same broker.

    "redis-sharded": the project's layer over two Redis servers, where it sends each event
    with channels_redis' own calls (its batch calls use one server), to every member."""
    if request.param == "in-memory":
        return request.param, lambda: get_channel_layer()
    url = request.getfixturevalue("redis_url")
    prefix = f"local-{uuid.uuid4().hex}"
    if request.param == "redis":
        backend, other = "realtime.layers.RedisChannelLayer", RedisChannelLayer
        hosts: list[Any] = [{"address": url}]
    elif request.param == "redis-sharded":
        backend, other = "realtime.layers.RedisChannelLayer", RedisChannelLayer
        hosts = [{"address": url}, {"address": request.getfixturevalue("second_redis_url")}]
    else:
        backend, other = "channels_redis.pubsub.RedisPubSubChannelLayer", RedisPubSubChannelLayer
        hosts = [url]
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": backend, "CONFIG": {"hosts": hosts, "prefix": prefix}}
    }
    return request.param, lambda: other(hosts=hosts, prefix=prefix)


class Recorder:
    """A local socket: the seqs its hub handed it."""

    def __init__(self) -> None:
        self.seqs: list[int | None] = []
        self.changed = asyncio.Event()

    def deliver_frame(self, frame: str, seq: int | None) -> None:
        self.seqs.append(seq)
        self.changed.set()

    def deliver_event(self, payload: dict[str, Any]) -> None:
        self.seqs.append(payload["n"])
        self.changed.set()

    async def until(self, condition, timeout: float = 5) -> None:
        """Wait until ``condition(seqs)`` holds (or the time is up)."""
        async with asyncio.timeout(timeout):
            while not condition(self.seqs):
                self.changed.clear()
                await self.changed.wait()

    def resync(self) -> None:
        raise AssertionError("nothing was lost, so nothing should resync")

    def revoke(self, user_id: int) -> None:
        pass


def frame(seq: int) -> dict[str, Any]:
    return {"type": "hub.frame", "group": "room-1", "frame": "{}", "seq": seq}


async def _here_and_another_process(make_layer, group: str = "room-1"):
    """This process's hub with a local socket in ``group``, and another worker's hub channel
    in it (its own layer object: its own connections)."""
    hub, here = get_hub(), Recorder()
    await hub.subscribe(group, here)
    layer = make_layer()
    channel = await layer.new_channel("hub.")
    await layer.group_add(group, channel)
    return hub, here, layer, channel


async def _received(layer: Any, channel: str, count: int) -> list[int]:
    got = []
    for _ in range(count):
        got.append((await asyncio.wait_for(layer.receive(channel), 5))["seq"])
    return got


async def test_a_process_own_event_reaches_its_sockets_at_once_and_only_once(layers):
    kind, make_layer = layers
    hub, here, other_layer, other = await _here_and_another_process(make_layer)

    events._publish("room-1", frame(1))
    if kind in AT_ONCE:
        assert here.seqs == [1]  # before any await: no round trip through the layer
    assert await _received(other_layer, other, 1) == [1]
    await asyncio.sleep(0.3)  # time for the hub's reader to pass on anything the layer brought
    assert here.seqs == [1]
    await hub.stop()


async def test_own_and_other_processes_events_reach_a_socket_in_seq_order_once_each(layers):
    """Seqs 1 and 3 stored here, 2 and 4 by another worker: 3 waits for 2, then 4 follows."""
    kind, make_layer = layers
    hub, here, other_layer, other = await _here_and_another_process(make_layer)

    events._publish("room-1", frame(1))
    await here.until(lambda seqs: seqs == [1])
    events._publish("room-1", frame(3))
    if kind in AT_ONCE:
        assert here.seqs == [1]  # 3 is held: 2 has not come yet
    await other_layer.group_send("room-1", frame(2))
    await other_layer.group_send("room-1", frame(4))
    await here.until(lambda seqs: len(seqs) >= 4)
    await asyncio.sleep(0.3)
    assert here.seqs == [1, 2, 3, 4]
    # The other process got its own two back through the layer (it has no hub here) and ours.
    assert sorted(await _received(other_layer, other, 4)) == [1, 2, 3, 4]
    await hub.stop()


async def test_a_user_event_sent_here_reaches_this_process_sockets_once(layers):
    """Events without a seq (a user's sidebar, notifications) take the same path."""
    _, make_layer = layers
    hub, here, _, _ = await _here_and_another_process(make_layer, "user-7")
    events._publish("user-7", {"type": "hub.event", "group": "user-7", "payload": {"n": 9}})
    await asyncio.sleep(0.3)
    assert here.seqs == [9]
    await hub.stop()
