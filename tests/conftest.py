"""Shared fixtures: users, rooms, session cookies and WebSocket connections."""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from chatproject.asgi import application

from .factories import room_make, user_create
from .support.browser import chromium
from .support.server import live_server, signup


@pytest.fixture(autouse=True)
def _kept_rooms_forgotten():
    """Each test's database starts empty, but the process would still keep the public rooms
    of earlier tests by slug (rooms.selectors.rooms_readable_on_connect), and their rooms'
    catch-ups (rooms.catchup): forget them."""
    from rooms.catchup import catchups_forget
    from rooms.selectors import rooms_forget

    rooms_forget()
    catchups_forget()


@pytest.fixture(scope="module")
def server():
    """The real server (uvicorn) on a fresh SQLite database, shared by a module's tests."""
    with live_server() as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, shared by a module's tests."""
    with chromium() as running:
        yield running


@pytest.fixture
def open_as(browser, server):
    """Sign up a new user through the real form; returns a browser context logged in as them
    and their HTTP client. An uncaught script error on any page fails the test."""
    contexts, errors = [], []

    def _open_as(username: str, viewport: dict | None = None):
        client = signup(server.url, username)
        context = browser.new_context(viewport=viewport or {"width": 1100, "height": 700})
        contexts.append(context)
        context.on("page", lambda page: page.on("pageerror", lambda e: errors.append(str(e))))
        context.add_cookies(
            [{"name": k, "value": v, "url": server.url} for k, v in client.cookies.items()]
        )
        return context, client

    yield _open_as
    for context in contexts:
        context.close()
    assert errors == [], "the page's script failed"


@pytest.fixture
def alice(db):
    return user_create("alice")


@pytest.fixture
def bob(db):
    return user_create("bob")


@pytest.fixture
def room(db, alice):
    return room_make("General", created_by=alice)


def session_cookie(user) -> str:
    """A real session for ``user``, as the login view would create it."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


Connect = Callable[..., Awaitable[WebsocketCommunicator]]


@pytest.fixture
async def connect():
    """Open a room socket as a user (or anonymously) with a same-site Origin; closes at the end."""
    opened: list[WebsocketCommunicator] = []

    async def _connect(
        path: str,
        user=None,
        origin: str = "http://localhost",
        expect_accept: bool = True,
        headers: list[tuple[bytes, bytes]] = (),
    ) -> WebsocketCommunicator:
        headers = [(b"host", b"localhost"), (b"origin", origin.encode()), *headers]
        if user is not None:
            cookie = await database_sync_to_async(session_cookie)(user)
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
        communicator = WebsocketCommunicator(application, path, headers=headers)
        opened.append(communicator)
        connected, _ = await communicator.connect(timeout=5)
        if expect_accept:
            assert connected, f"{path} refused the handshake"
        communicator.accepted = connected
        if connected and path.startswith("/ws/rooms/"):
            await _connect_finished(communicator)
        return communicator

    yield _connect
    for communicator in opened:
        # A socket whose test timed out was cancelled by the communicator: its disconnect
        # raises CancelledError, which must not skip the database's flush after this test.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await communicator.disconnect(timeout=2)


async def _connect_finished(communicator: WebsocketCommunicator) -> None:
    """Wait until a room socket's connect has run to its end (it joined the room and loaded
    its state), keeping every frame it sent meanwhile for the test to read.

    A room socket's accept goes out with its first frame, which a socket opened without
    ``?after=`` may send after its connect has loaded its state (its writer's first turn). The
    socket answers frames only after its connect, so the answer to an empty ``history`` request
    marks the end; the frames before it go back, in order, to the front of the communicator's
    queue.
    """
    await communicator.send_json_to({"type": "history", "before": 1, "limit": 1})
    kept = []
    while True:
        message = await communicator.receive_output(timeout=5)
        if message["type"] == "websocket.send":
            frame = json.loads(message["text"])
            if frame.get("type") == "history" and frame.get("before") == 1:
                break
        kept.append(message)
        if message["type"] == "websocket.close":
            break
    communicator.output_queue._queue.extendleft(reversed(kept))


async def joined(communicator: WebsocketCommunicator) -> None:
    """Wait until a room socket has joined its room.

    A test that stores a message without going through a socket first waits for an answered
    ``sync``: the socket answers only once its connect has joined and loaded its state.
    """
    await communicator.send_json_to({"type": "sync", "after": 2**62})
    while (await communicator.receive_json_from(timeout=5))["type"] != "synced":
        pass


async def receive(communicator: WebsocketCommunicator, timeout: float = 3) -> dict:
    """The next frame of a socket, parsed."""
    return json.loads(await communicator.receive_from(timeout=timeout))


async def receive_type(communicator: WebsocketCommunicator, kind: str, timeout: float = 3) -> dict:
    """The next frame of type ``kind``, skipping others (bounded by ``timeout`` per frame)."""
    for _ in range(50):
        frame = await receive(communicator, timeout)
        if frame["type"] == kind:
            return frame
    raise AssertionError(f"no {kind!r} frame in 50 frames")


def cookie_header(user) -> str:
    """``Cookie:`` header value carrying ``user``'s session."""
    cookies = SimpleCookie()
    cookies[settings.SESSION_COOKIE_NAME] = session_cookie(user)
    return cookies.output(header="", attrs=[]).strip()


__all__ = ["Connect", "cookie_header", "get_user_model", "session_cookie"]
