"""The per-process hub: one layer subscription per group, every frame to every local socket."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.test import override_settings

from realtime.events import room_group
from realtime.hub import Hub, get_hub
from rooms.services import message_create

from .conftest import joined
from .factories import user_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def test_a_process_joins_a_rooms_group_once_whatever_its_socket_count(connect, room):
    users = [await database_sync_to_async(user_create)() for _ in range(5)]
    sockets = [await connect(f"/ws/rooms/{room.slug}/", user) for user in users]
    for socket in sockets:
        await joined(socket)
    layer = get_channel_layer()
    assert len(layer.groups[room_group(room.pk)]) == 1
    for socket in sockets:
        await socket.disconnect()
    await asyncio.sleep(0.05)
    assert room_group(room.pk) not in layer.groups


async def test_a_burst_beyond_the_layers_default_capacity_reaches_every_socket(connect, room):
    """The tutorial design loses messages past 100 queued per socket; this one loses none."""
    users = [await database_sync_to_async(user_create)() for _ in range(30)]
    sockets = [await connect(f"/ws/rooms/{room.slug}/", user) for user in users]
    for socket in sockets:
        await joined(socket)

    def burst() -> None:
        for i in range(250):
            message_create(room=room, author=users[0], body=f"burst {i}")

    await database_sync_to_async(burst)()
    for socket in sockets:
        seqs = [json.loads(await socket.receive_from(timeout=5))["seq"] for _ in range(250)]
        assert seqs == list(range(1, 251))


@override_settings(CHAT_OUTBOX_LIMIT=5)
async def test_a_socket_that_falls_behind_is_closed_without_holding_back_the_room(
    connect, alice, bob, room
):
    slow = await connect(f"/ws/rooms/{room.slug}/", alice)
    fast = await connect(f"/ws/rooms/{room.slug}/", bob)
    for socket in (slow, fast):
        await joined(socket)
    # Alice's client stops reading: her writes wait, as when a socket's buffers are full.
    # The room page sockets, not the sidebar watches (rooms/sidebar.py) in the same group.
    sockets = [c for c in get_hub().groups[room_group(room.pk)] if hasattr(c, "frame_send")]
    stalled = next(c for c in sockets if c.user == alice)
    release = asyncio.Event()
    real_send = stalled.frame_send

    async def blocked_send(message):
        await release.wait()
        await real_send(message)

    stalled.frame_send = blocked_send

    def send_ten() -> None:
        for i in range(10):
            message_create(room=room, author=bob, body=f"m{i}")

    await database_sync_to_async(send_ten)()
    seqs = [json.loads(await fast.receive_from(timeout=5))["seq"] for _ in range(10)]
    assert seqs == list(range(1, 11))
    assert await slow.receive_output(timeout=2) == {"type": "websocket.close", "code": 4008}
    release.set()


class SlowLeaveLayer(InMemoryChannelLayer):
    """An in-memory layer whose group_discard takes a while, as a network round trip does."""

    async def group_discard(self, group, channel):
        await asyncio.sleep(0.05)
        await super().group_discard(group, channel)


class Listener:
    def deliver_frame(self, frame, seq):
        pass

    def deliver_event(self, payload):
        pass

    def resync(self):
        pass


async def test_a_leave_never_overtakes_a_later_join_of_the_same_group():
    hub = Hub()
    hub.layer = SlowLeaveLayer()
    first, second = Listener(), Listener()
    await hub.subscribe("room-1", first)
    leaving = asyncio.create_task(hub.unsubscribe("room-1", first))
    await asyncio.sleep(0)
    await hub.subscribe("room-1", second)
    await leaving
    assert hub.layer.groups["room-1"].keys() == {hub.channel}
    await hub.unsubscribe("room-1", second)
    assert "room-1" not in hub.layer.groups
    hub._reader.cancel()
    hub._refresher.cancel()
