"""A worker keeps the public rooms its sockets connect to (``rooms_readable_on_connect``): one
instance per room, no room lookup per reconnect, and a room deleted elsewhere is noticed."""

import pytest
from channels.db import database_sync_to_async

from rooms import selectors
from rooms.models import Room

from .conftest import joined, receive
from .factories import room_make, user_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

TRY_AGAIN = {"type": "websocket.close", "code": 1013}
NOT_FOUND = {"type": "websocket.close", "code": 4404}


async def test_the_sockets_of_a_public_room_share_one_kept_instance(connect, alice, room):
    bob = await database_sync_to_async(user_create)()
    first = await connect(f"/ws/rooms/{room.slug}/", alice)
    second = await connect(f"/ws/rooms/{room.slug}/", bob)
    await joined(first)
    await joined(second)
    assert selectors._public_rooms[room.slug].pk == room.pk
    kept = selectors._public_rooms[room.slug]
    third = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(third)
    assert selectors._public_rooms[room.slug] is kept  # found without a lookup


async def test_a_kept_room_is_found_without_a_trip_to_the_database_thread(
    connect, alice, room, monkeypatch
):
    from rooms import consumers

    trips = []

    async def room_get(user, slug):
        trips.append(slug)
        return await looked_up(user, slug)

    looked_up = consumers._room_get
    monkeypatch.setattr(consumers, "_room_get", room_get)
    first = await connect(f"/ws/rooms/{room.slug}/", alice)
    second = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(first)
    await joined(second)
    assert trips == [room.slug]  # the first socket's, which made the process keep it


async def test_a_private_room_is_never_kept(connect, alice):
    from rooms.services import room_create

    secret = await database_sync_to_async(room_create)(
        name="secret", created_by=alice, private=True
    )
    socket = await connect(f"/ws/rooms/{secret.slug}/", alice)
    await joined(socket)
    assert secret.slug not in selectors._public_rooms


async def test_a_kept_room_deleted_by_another_worker_closes_1013_then_4404(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    # Deleted without this worker's signal, as another worker or a script would.
    await database_sync_to_async(Room.objects.filter(pk=room.pk).delete)()
    selectors._public_rooms[room.slug] = room  # this worker still keeps it
    retry = await connect(f"/ws/rooms/{room.slug}/", alice)
    assert await retry.receive_output(timeout=3) == TRY_AGAIN
    assert room.slug not in selectors._public_rooms
    again = await connect(f"/ws/rooms/{room.slug}/", alice)
    assert await again.receive_output(timeout=3) == NOT_FOUND


async def test_a_new_room_under_a_deleted_rooms_slug_is_reached_after_one_retry(
    connect, alice, room
):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    stale = selectors._public_rooms[room.slug]
    await database_sync_to_async(Room.objects.filter(pk=room.pk).delete)()
    fresh = await database_sync_to_async(room_make)(room.name, alice)
    assert fresh.slug == room.slug and fresh.pk != room.pk
    selectors._public_rooms[room.slug] = stale  # another worker's view
    retry = await connect(f"/ws/rooms/{room.slug}/", alice)
    assert await retry.receive_output(timeout=3) == TRY_AGAIN
    again = await connect(f"/ws/rooms/{room.slug}/", alice)
    await again.send_json_to({"type": "message", "body": "in the new room"})
    assert (await receive(again))["body"] == "in the new room"
    assert selectors._public_rooms[room.slug].pk == fresh.pk


async def test_deleting_a_room_here_forgets_it_at_once(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    await database_sync_to_async(lambda: Room.objects.get(pk=room.pk).delete())()
    assert room.slug not in selectors._public_rooms
