"""A socket learns its user from the session at the handshake and joins the user's group after
it. A session that ends in between (its check event reaches no socket of the user yet) still
closes the socket with 4401; a connect with no session check sent in between reads the session
once, not twice (a reconnect storm's database work, bench S5). Both on the embedded default's
in-memory layer (the process counts its checks) and on the project's Redis layer, a real
redis-server (every process counts its checks in one Redis counter).

The window is made real: the handshake's read is followed at once by a logout's two steps, the
session row deleted and the check sent, before the socket goes on to join.
"""

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.models import Session

import realtime.auth
from realtime import sessions
from realtime.layers import RedisChannelLayer

from .conftest import cookie_header
from .support.services import redis_server
from .support.sessions import session_rows_spy

pytestmark = pytest.mark.django_db(transaction=True)

ROOM_AND_NOTIFICATIONS = ["/ws/rooms/{slug}/", "/ws/notifications/"]


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as server:
        yield server.url


def _redis_layer(url: str, prefix: str) -> dict:
    return {
        "BACKEND": "realtime.layers.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": url}], "prefix": prefix},
    }


@pytest.fixture(params=["in-memory", "redis"])
def layer(request, settings):
    """Each test on both layers: the embedded default and the project's Redis layer."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        settings.CHANNEL_LAYERS = {"default": _redis_layer(url, f"window-{uuid.uuid4().hex}")}
    return request.param


@pytest.fixture
def session_reads(monkeypatch):
    """How many times a session was loaded from the database since the test began."""
    reads: list[str] = []
    session_rows_spy(monkeypatch, reads.append)
    return reads


def _after_the_handshake(monkeypatch, then):
    """Run ``then(session_key, user_id)`` (sync, on the database thread) right after the
    handshake has read the socket's session and before the socket joins anything."""
    read = realtime.auth._session_user

    async def read_then(session_key):
        user = await read(session_key)
        if user is not None:
            await database_sync_to_async(then)(session_key, user.pk)
        return user

    monkeypatch.setattr(realtime.auth, "_session_user", read_then)


def _logged_out(session_key, user_id):
    """What logging out does: the session row goes, then every socket of the user is told."""
    Session.objects.filter(session_key=session_key).delete()
    sessions.check_broadcast(user_id)


async def _cookie(user) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", (await database_sync_to_async(cookie_header)(user)).encode())]


@pytest.mark.parametrize("path", ROOM_AND_NOTIFICATIONS)
async def test_a_session_ended_between_the_handshake_and_the_join_closes_the_socket(
    layer, connect, alice, room, monkeypatch, path
):
    _after_the_handshake(monkeypatch, _logged_out)
    socket = await connect(path.format(slug=room.slug), alice)
    while (output := await socket.receive_output(timeout=3))["type"] != "websocket.close":
        pass
    assert output["code"] == 4401


@pytest.mark.parametrize("path", ROOM_AND_NOTIFICATIONS)
async def test_a_connect_with_no_session_check_meanwhile_reads_the_session_once(
    layer, connect, alice, room, session_reads, path
):
    cookie = await _cookie(alice)
    session_reads.clear()
    socket = await connect(path.format(slug=room.slug), None, headers=cookie)
    if "notifications" in path:  # its connect ends with the unread count (a room socket's
        # connect is waited for by ``connect``)
        assert (await socket.receive_json_from(timeout=3))["type"] == "notification.unread"
    assert len(session_reads) == 1  # the handshake's


async def test_a_check_sent_for_anyone_meanwhile_makes_the_socket_read_its_session_again(
    layer, connect, alice, bob, room, session_reads, monkeypatch
):
    """The mark counts every check the process sent, whoever's: the socket cannot tell whose,
    so it reads again, finds its session still good, and stays open."""
    _after_the_handshake(monkeypatch, lambda key, user_id: sessions.check_broadcast(bob.pk))
    cookie = await _cookie(alice)
    session_reads.clear()
    socket = await connect(f"/ws/rooms/{room.slug}/", None, headers=cookie)
    await socket.send_json_to({"type": "message", "body": "still here"})
    while (frame := await socket.receive_json_from(timeout=3))["type"] != "message":
        assert frame["type"] != "error", frame
    assert frame["body"] == "still here"
    assert len(session_reads) == 2


async def test_an_anonymous_connect_takes_no_mark(layer, connect, room, monkeypatch):
    """A socket without a session cookie reads nothing: no mark (on Redis, no round trip)."""
    marks = []
    mark = realtime.auth.checks_mark

    async def counted():
        marks.append(1)
        return await mark()

    monkeypatch.setattr(realtime.auth, "checks_mark", counted)
    socket = await connect(f"/ws/rooms/{room.slug}/", None, expect_accept=False)
    while (output := await socket.receive_output(timeout=3))["type"] != "websocket.close":
        pass
    assert output["code"] == 4401
    assert marks == []


async def test_on_redis_a_check_sent_by_any_process_moves_every_process_mark(redis_url, settings):
    """Checks come from every worker, command and script: the mark is one Redis counter."""
    prefix = f"window-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = {"default": _redis_layer(redis_url, prefix)}
    mark = await sessions.checks_mark()
    assert mark is not None
    assert await sessions.checks_mark() == mark  # nothing sent: the same mark
    # A request's thread (logout, a password change) counts its check before sending it.
    await asyncio.to_thread(sessions.check_broadcast, 1)
    moved = await sessions.checks_mark()
    assert moved != mark
    # Another process (its own layer object and connections) moves it too.
    other = RedisChannelLayer(hosts=[{"address": redis_url}], prefix=prefix)
    await other.counter_incr(sessions.CHECKS_COUNTER)
    assert await sessions.checks_mark() not in (mark, moved)


async def test_on_redis_a_mark_taken_before_redis_lost_the_counter_differs_after(
    redis_url, settings
):
    """A restarted or evicting Redis forgets the counter: the next mark must not equal the
    one before by counting up to it again, so a socket reads its session again."""
    prefix = f"window-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = {"default": _redis_layer(redis_url, prefix)}
    mark = await sessions.checks_mark()
    other = RedisChannelLayer(hosts=[{"address": redis_url}], prefix=prefix)
    connection = other.connection(0)
    await connection.delete(f"{prefix}:counter:{sessions.CHECKS_COUNTER}")
    after = await sessions.checks_mark()
    assert after is not None and after != mark
    for _ in range(3):  # counting on from wherever it starts never comes back to the old one
        await other.counter_incr(sessions.CHECKS_COUNTER)
        assert await sessions.checks_mark() != mark


async def test_the_in_memory_layer_counts_this_process_checks(settings):
    mark = await sessions.checks_mark()  # the in-memory layer: this process is the only server
    await asyncio.to_thread(sessions.check_broadcast, 1)
    assert await sessions.checks_mark() == mark + 1


async def test_with_a_layer_that_keeps_no_shared_counter_every_connect_reads_again(settings):
    """Other workers send checks this process cannot count: no mark, so always read again."""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {}}
    }
    assert await sessions.checks_mark() is None
