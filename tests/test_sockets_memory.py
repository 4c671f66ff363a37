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
    # No notification yet: both hold the one shared empty set, not 216 bytes each.
    assert first.unread_recent is second.unread_recent == frozenset()
    for socket in sockets:
        await socket.disconnect()


def _awaiting(coroutine) -> list[str]:
    """The names of the coroutines a suspended coroutine awaits through, outermost first."""
    names = []
    while coroutine is not None and hasattr(coroutine, "cr_await"):
        names.append(coroutine.__qualname__)
        coroutine = coroutine.cr_await
    return names


@pytest.mark.django_db(transaction=True)
async def test_an_open_socket_keeps_no_router_coroutine(connect, alice, room):
    """The routers and the Origin check hand the socket on as tail calls (realtime.routers):
    what stays suspended for the socket's life is the session middleware and the consumer."""
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    chain = _awaiting(socket.future.get_coro())
    assert chain[:2] == ["SessionAuthMiddleware.__call__", "HubConsumer.__call__"], chain
    assert not any("Router" in name or "Origin" in name or "app" == name for name in chain)
    # The middleware's frame holds no scope of its own: the consumer's is the one scope kept.
    middleware = socket.future.get_coro()
    assert not any(isinstance(v, dict) for v in middleware.cr_frame.f_locals.values())
    await socket.disconnect()


def test_the_routers_route_and_refuse_as_channels_does():
    from channels.routing import URLRouter as ChannelsURLRouter
    from django.urls import path, re_path

    from realtime.routers import ProtocolTypeRouter, URLRouter

    def app(scope, receive, send):
        return scope

    routes = [path("ws/rooms/<str:slug>/", app), re_path(r"^ws/n/(?P<n>\d+)/$", app)]
    nested = [path("ws/", URLRouter([path("deep/<int:n>/", app)]))]
    scope = {"type": "websocket", "path": "/ws/rooms/general/"}
    routed = URLRouter(routes)(scope, None, None)
    assert routed["url_route"] == {"args": (), "kwargs": {"slug": "general"}}
    assert URLRouter(routes)({**scope, "path": "/ws/n/7/"}, None, None)["url_route"]["kwargs"] == {
        "n": "7"
    }
    deep = URLRouter(nested)({**scope, "path": "/ws/deep/3/"}, None, None)
    assert deep["url_route"]["kwargs"] == {"n": 3}
    for router in (URLRouter, ChannelsURLRouter):  # the same refusal as Channels'
        with pytest.raises(ValueError, match="No route found"):
            result = router(routes)({**scope, "path": "/ws/nowhere/"}, None, None)
            if hasattr(result, "send"):
                result.send(None)
    with pytest.raises(ValueError, match="No application configured"):
        ProtocolTypeRouter({"websocket": app})({"type": "http"}, None, None)


@pytest.mark.django_db(transaction=True)
async def test_open_sockets_share_their_session_check_timers_and_leave_them_on_close(
    connect, alice, bob, room
):
    from realtime.consumers import _expiries

    sockets = [await connect(f"/ws/rooms/{room.slug}/", user) for user in (alice, bob)]
    for socket in sockets:
        await joined(socket)
    wheel = _expiries()
    waiting = [s for due in wheel.due.values() for s in due]
    assert sorted(s.user.username for s in waiting) == ["alice", "bob"]
    # One timer per second of connects for all of them, not a TimerHandle on each socket.
    assert all(isinstance(s.session_timer, int) for s in waiting)
    for socket in sockets:
        await socket.disconnect()
    assert not any(wheel.due.values())  # nothing of a closed socket stays
