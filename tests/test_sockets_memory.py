"""What an idle socket holds (issue 12, S3): a connected room socket keeps its attributes in one
key table shared by every socket (CPython shares a class's instance key table when each instance
sets the same keys in the same order, fewer than 30 of them), so it pays only for its values."""

import sys

import pytest

from realtime.events import room_group
from realtime.hub import get_hub
from rooms.consumers import RoomConsumer

from .conftest import joined


def _room_sockets(room) -> list[RoomConsumer]:
    members = get_hub().groups.get(room_group(room.pk), ())
    return [s for s in members if isinstance(s, RoomConsumer)]


@pytest.mark.django_db(transaction=True)
async def test_a_connected_room_socket_shares_its_attribute_keys(connect, alice, bob, room):
    sockets = [
        await connect(f"/ws/rooms/{room.slug}/?presence=1&after=0", user) for user in (alice, bob)
    ]
    for socket in sockets:
        await joined(socket)
    first, second = _room_sockets(room)
    # One under CPython's limit of 30: a socket being closed sets ``closer`` as the 30th.
    assert len(vars(first)) <= 29, " ".join(vars(first))
    assert " ".join(vars(first)) == " ".join(vars(second))  # the same keys in the same order
    # A dict sharing its keys is a values array, far smaller than one with keys of its own.
    own = dict(vars(first))
    assert sys.getsizeof(vars(first)) < sys.getsizeof(own) / 2
    for socket in sockets:
        await socket.disconnect()
