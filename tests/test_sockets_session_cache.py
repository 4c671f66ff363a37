"""With ``cached_db`` sessions on Redis (the production settings), a socket's handshake reads its
session from the cache on the event loop and judges it by the same rule as Django's
``get_user``: the database thread never reads the session of a socket whose session is
cached, and a session that ended (logged out, a new password, a deactivated user) is refused
with 4401 as before. A session missing from the cache is read the way Django reads it, from the
database; a cache read that fails answers nothing and leaves the session to Django. A real
redis-server.
"""

import uuid

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.backends import cached_db
from django.core.cache import caches
from django.test import Client

import realtime.auth
from realtime import session_cache
from rooms.models import Message

from .support.server import free_port
from .support.services import redis_server
from .support.sessions import session_rows_spy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as server:
        yield server.url


def _cache_settings(settings, location: str) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "KEY_PREFIX": f"session-cache-{uuid.uuid4().hex}",
            "OPTIONS": {"socket_timeout": 2.0, "socket_connect_timeout": 2.0},
        }
    }
    settings.SESSION_ENGINE = "chatapp.sessions.cached_db"


@pytest.fixture
def cached_sessions(settings, redis_url):
    """The production session settings: cached_db on a real Redis cache."""
    _cache_settings(settings, redis_url)


@pytest.fixture
def reads(monkeypatch):
    """Where sessions were read since the test began: ``loop`` (the handshake's cache read on
    the event loop, with what it found), ``django`` (a ``SessionStore.load`` on the database
    thread, cache and all) and ``database`` (each session row read, alone or with others)."""
    seen: dict[str, list] = {"loop": [], "django": [], "database": []}
    cached = session_cache.session_cached
    load = cached_db.SessionStore.load

    async def loop_read(session_key):
        data = await cached(session_key)
        seen["loop"].append(data is not None)
        return data

    def django_load(store):
        seen["django"].append(store.session_key)
        return load(store)

    monkeypatch.setattr(realtime.auth, "session_cached", loop_read)
    monkeypatch.setattr(cached_db.SessionStore, "load", django_load)
    session_rows_spy(monkeypatch, seen["database"].append)
    return seen


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _cookie_headers(client: Client) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def _closed_with(socket) -> int:
    while (output := await socket.receive_output(timeout=3))["type"] != "websocket.close":
        pass
    return output["code"]


async def _posts_as(socket, user, body: str) -> None:
    """The socket is open as ``user``: a message it sends is stored with them as author."""
    await socket.send_json_to({"type": "message", "body": body})
    while (frame := await socket.receive_json_from(timeout=3))["type"] != "message":
        assert frame["type"] != "error", frame
    assert frame["body"] == body
    message = await database_sync_to_async(Message.objects.select_related("author").get)(body=body)
    assert message.author == user


async def test_a_cached_session_is_read_on_the_event_loop_not_by_the_database_thread(
    cached_sessions, connect, alice, room, reads
):
    client = await database_sync_to_async(_logged_in)(alice)  # login writes row and cache
    for list_ in reads.values():
        list_.clear()
    socket = await connect(f"/ws/rooms/{room.slug}/", None, headers=_cookie_headers(client))
    await _posts_as(socket, alice, "from the cache")
    assert reads == {"loop": [True], "django": [], "database": []}


async def test_a_session_missing_from_the_cache_is_read_from_the_database(
    cached_sessions, connect, alice, room, reads
):
    client = await database_sync_to_async(_logged_in)(alice)
    key = client.cookies["sessionid"].value
    await caches["default"].adelete(cached_db.KEY_PREFIX + key)  # evicted
    for list_ in reads.values():
        list_.clear()
    socket = await connect(f"/ws/rooms/{room.slug}/", None, headers=_cookie_headers(client))
    await _posts_as(socket, alice, "from the database")
    assert reads == {"loop": [False], "django": [key], "database": [key]}


@pytest.mark.parametrize("path", ["/ws/rooms/{slug}/", "/ws/notifications/"])
async def test_a_logged_out_session_is_refused_with_4401(
    cached_sessions, connect, alice, room, reads, path
):
    client = await database_sync_to_async(_logged_in)(alice)
    headers = _cookie_headers(client)
    await database_sync_to_async(client.logout)()  # flush: the row and the cache entry go
    socket = await connect(path.format(slug=room.slug), None, headers=headers, expect_accept=False)
    if socket.accepted:
        assert await _closed_with(socket) == 4401
    assert reads["loop"] == [False]  # not taken for a session from the cache


def _password_changed(user) -> None:
    user.set_password("a-brand-new-password-42")
    user.save()


def _deactivated(user) -> None:
    user.is_active = False
    user.save()


@pytest.mark.parametrize("change", [_password_changed, _deactivated])
async def test_a_cached_session_that_django_would_no_longer_accept_is_refused(
    cached_sessions, connect, alice, room, reads, change
):
    """The cache still holds the session (a password change or deactivation does not touch
    it): the rule, not the cache, decides."""
    client = await database_sync_to_async(_logged_in)(alice)
    await database_sync_to_async(change)(alice)
    socket = await connect(
        f"/ws/rooms/{room.slug}/", None, headers=_cookie_headers(client), expect_accept=False
    )
    if socket.accepted:
        assert await _closed_with(socket) == 4401
    assert reads["loop"] == [True]


async def test_a_cache_read_that_fails_gives_nothing_and_leaves_the_session_to_django(
    cached_sessions, settings, alice, caplog
):
    """Redis for the cache refusing connections: the loop's read answers nothing (Django's
    own read then decides, with Django's handling of a failing cache)."""
    client = await database_sync_to_async(_logged_in)(alice)
    key = client.cookies["sessionid"].value
    assert await session_cache.session_cached(key) is not None
    _cache_settings(settings, f"redis://127.0.0.1:{free_port()}/0")  # now nothing listens
    assert await session_cache.session_cached(key) is None
    assert "reading a session from the cache failed" in caplog.text


async def test_the_embedded_default_reads_no_cache(connect, alice, room, reads):
    """``db`` sessions (no REDIS_URL): nothing to read on the loop, one database read."""
    client = await database_sync_to_async(_logged_in)(alice)
    key = client.cookies["sessionid"].value
    for list_ in reads.values():
        list_.clear()
    socket = await connect(f"/ws/rooms/{room.slug}/", None, headers=_cookie_headers(client))
    await _posts_as(socket, alice, "embedded")
    assert reads["loop"] == [False] and reads["database"] == [key]
