"""Sockets end with their session (issue 13, finding 1), through two uvicorn workers on Redis.

Django accepts a session only while it exists, carries the user's current password hash and the
user is active. A socket follows the same rule: logging out, a password change, a password set
outside a request (reset, admin, shell) and deactivation close every socket (room and
notification sockets) of the sessions that end, on every worker, with 4401 within 2 s. A
password change through Django's ``PasswordChangeView`` keeps the changing session, and its
sockets, alive (``update_session_auth_hash``).
"""

import asyncio
import time

import pytest
from django.test import override_settings

from realtime.checks import socket_session_middleware

from .conftest import joined
from .support.clients import RecordedSocket
from .support.server import PASSWORD, manage, room_create
from .support.sockets import Sockets, csrf_post, redis_node

# Seconds from the end of the session (the response to the request that ends it, or the end
# of the command) to every socket closed.
DEADLINE = 2.0
NEW = "another-horse-battery-staple"


@pytest.fixture(scope="module")
def site():
    with redis_node(DJANGO_SETTINGS_MODULE="tests.support.live_settings") as running:
        assert len(running.pids) == 2
        yield running


async def _sockets_of(site: Sockets, session, path: str) -> list[RecordedSocket]:
    """Room sockets of ``session`` on every worker, and a notification socket."""
    sockets = await site.open_on_every_worker(session, path)
    notifications = await site.open(session, "/notifications/")
    await notifications.next({"notification.unread"})
    return [*sockets, notifications]


async def _all_closed_with_4401(sockets: list[RecordedSocket], answered: float) -> list[float]:
    closed = await asyncio.gather(*(s.ended(DEADLINE + 3) for s in sockets))
    assert all(closed), [s.close_code for s in sockets]
    assert [s.close_code for s in sockets] == [4401] * len(sockets)
    latencies = [s.closed_at - answered for s in sockets]
    assert max(latencies) < DEADLINE, latencies
    return latencies


async def _still_serves(socket: RecordedSocket, body: str) -> None:
    assert socket.close_code is None
    await socket.send(type="message", body=body)
    while (frame := await socket.next({"message", "error"})).get("body") != body:
        assert frame["type"] == "message", frame  # another socket's message, not an error


def _two_sessions(site: Sockets, username: str):
    """Two sessions of a new user (signed up, then logged in elsewhere) and a room of theirs."""
    first, second = site.signup(username), site.login(username)
    return first, second, room_create(first, f"Room of {username}")


@pytest.mark.server
def test_logout_closes_every_socket_of_that_session_and_no_other(site):
    here, elsewhere, path = _two_sessions(site, "alice")

    async def scenario():
        ending, staying = [await _sockets_of(site, s, path) for s in (here, elsewhere)]
        assert {s.pid for s in ending} == {s.pid for s in staying} == site.pids
        response = await asyncio.to_thread(csrf_post, here, "/logout/", {})
        assert response.status_code == 302, response.text[:300]
        latencies = await _all_closed_with_4401(ending, time.monotonic())
        # Logging out ends that session only, as in Django: the other one keeps its sockets.
        await asyncio.sleep(0.5)
        await _still_serves(staying[0], "still logged in elsewhere")
        assert [s.close_code for s in staying] == [None] * len(staying)
        for socket in staying:
            await socket.close()
        return latencies

    print("closed after", asyncio.run(scenario()))


@pytest.mark.server
def test_password_change_keeps_the_changing_session_and_closes_the_others(site):
    changing, other, path = _two_sessions(site, "bob")

    async def scenario():
        kept, ending = [await _sockets_of(site, s, path) for s in (changing, other)]
        # Django's own view: the user is saved, then update_session_auth_hash gives this
        # session the new hash under a new key. A check between the two would close it.
        response = await asyncio.to_thread(
            csrf_post,
            changing,
            "/test/password-change/",
            {"old_password": PASSWORD, **dict.fromkeys(("new_password1", "new_password2"), NEW)},
        )
        assert response.status_code == 302, response.text[:300]
        latencies = await _all_closed_with_4401(ending, time.monotonic())
        await asyncio.sleep(DEADLINE)  # past the deadline, the changing session's still open
        assert [s.close_code for s in kept] == [None] * len(kept)
        for socket in kept[:-1]:
            await _still_serves(socket, f"after my password change on {socket.pid}")
        assert changing.get("/rooms/").status_code == 200  # and its pages, as Django keeps it
        # The other session's sockets cannot come back.
        again = await site.open(other, f"{path}?after=0")
        assert await again.ended(5) and again.close_code == 4401, again.frames
        for socket in kept:
            await socket.close()
        return latencies

    print("closed after", asyncio.run(scenario()))


@pytest.mark.server
@pytest.mark.parametrize(
    ("username", "change"),
    [
        ("carol", "user.set_password('set-by-an-admin-or-a-reset'); user.save()"),
        ("dave", "user.is_active = False; user.save()"),
    ],
    ids=["password-set-outside-a-request", "deactivated"],
)
def test_a_change_outside_a_request_closes_every_session_of_the_user(site, username, change):
    first, second, path = _two_sessions(site, username)
    bystander = site.signup(f"{username}-neighbour")

    async def scenario():
        ending = [*await _sockets_of(site, first, path), *await _sockets_of(site, second, path)]
        neighbour = await site.open_joined(bystander, path)
        code = (
            "from django.contrib.auth import get_user_model; "
            f"user = get_user_model().objects.get(username={username!r}); {change}"
        )
        # A separate process (the shell an admin would use), sending on the same Redis.
        await asyncio.to_thread(manage, site.node.env, "shell", "-c", code)
        await _all_closed_with_4401(ending, time.monotonic())
        await _still_serves(neighbour, "others in the room are unaffected")
        await neighbour.close()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
@override_settings(SESSION_COOKIE_AGE=2)
async def test_a_socket_closes_when_its_session_expires(connect, alice, room):
    """No event announces an expiry: the socket checks again a session age after it opened."""
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    started = time.monotonic()
    closed = await socket.receive_output(timeout=2 + DEADLINE)
    assert closed == {"type": "websocket.close", "code": 4401}
    assert time.monotonic() - started < 2 + DEADLINE


def test_a_misplaced_socket_session_middleware_fails_the_system_check(settings):
    assert socket_session_middleware() == []
    sockets = "realtime.sessions.SocketSessionMiddleware"
    after = [m for m in settings.MIDDLEWARE if m != sockets] + [sockets]
    for middleware in (after, [m for m in settings.MIDDLEWARE if m != sockets]):
        settings.MIDDLEWARE = middleware
        assert [e.id for e in socket_session_middleware()] == ["realtime.E001"]
