"""Failures are contained and input is checked before the database (issue 13, findings 2 and 9).

- A handler that raises answers ``server_error`` (the socket keeps serving) or, while opening,
  closes the socket with 1011; either way the socket leaves the hub (its subscriber count).
- Bodies with C0/C1 control characters (NUL included) are refused with ``control_character``,
  bodies of invisible characters only get ``empty_body``, integers past 64 bits get a clear
  error: the same frames, the same answers and the same stored rows on SQLite and PostgreSQL,
  through the real server.
"""

import asyncio
import contextlib
import tempfile
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chatproject.asgi import application
from realtime.hub import get_hub
from rooms import consumers as room_consumers

from .conftest import cookie_header as cookie_of
from .conftest import joined, receive
from .factories import messages_make
from .support.clients import RecordedSocket, history
from .support.server import cookie_header, manage, room_create, signup
from .support.services import node_env, node_start, postgres_server

# Frames the database could not store or that show nothing, and the answer each gets.
REFUSED = [
    ({"type": "message", "body": "nul \x00 inside"}, "control_character"),
    ({"type": "message", "body": "escape \x1b[31m red"}, "control_character"),
    ({"type": "message", "body": "C1 next line \x85 and \x9b"}, "control_character"),
    ({"type": "message", "body": "delete \x7f"}, "control_character"),
    ({"type": "message", "body": "\u200b"}, "empty_body"),
    ({"type": "message", "body": " \u200b\u200c\u200d\u2060\ufeff\u00ad "}, "empty_body"),
    ({"type": "message", "body": "\u3164\u2800\u115f\u202e\u2066\ufe0f\U000e0041"}, "empty_body"),
    ({"type": "message", "body": "ok", "reply_to": 2**64}, "not_found"),
    ({"type": "message", "body": "ok", "reply_to": -(2**70)}, "not_found"),
    ({"type": "edit", "id": 2**64, "body": "x"}, "not_found"),
    ({"type": "edit", "id": 1, "body": "\x00"}, "control_character"),
    ({"type": "delete", "id": 99999999999999999999999}, "not_found"),
    ({"type": "react", "id": 2**63, "emoji": "👍"}, "not_found"),
    ({"type": "sync", "after": 2**64}, "invalid_after"),
    ({"type": "sync", "after": 99999999999999999999999}, "invalid_after"),
    ({"type": "sync", "after": -1}, "invalid_after"),
]
# Accepted, and stored as shown: tab and newline stay, carriage returns become newlines.
ACCEPTED = [
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("windows\r\nline\rends", "windows\nline\nends"),
    ("a zero\u200bwidth space inside", "a zero\u200bwidth space inside"),
    ("👨‍👩‍👧 family", "👨‍👩‍👧 family"),
]


# ---------------------------------------------------------------------------------------------
# Containment (in-process, where the hub can be read)


def _subscribers() -> int:
    return get_hub().subscriber_count()


@pytest.mark.django_db(transaction=True)
async def test_a_handler_that_raises_answers_server_error_keeps_serving_and_leaves_the_hub(
    connect, alice, room, monkeypatch, caplog
):
    before = _subscribers()
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    assert _subscribers() > before

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(room_consumers, "_message_create", broken)
    await socket.send_json_to({"type": "message", "body": "hello"})
    assert (await receive(socket))["code"] == "server_error"
    assert "a bug in a handler" in caplog.text  # logged with its traceback
    await socket.send_json_to({"type": "sync", "after": 0})
    assert (await receive(socket))["type"] == "synced"  # still serving
    await socket.disconnect()
    assert _subscribers() == before


@pytest.mark.django_db(transaction=True)
async def test_a_socket_whose_connect_fails_is_closed_1011_and_leaves_the_hub(
    connect, alice, room, monkeypatch
):
    before = _subscribers()

    async def broken(*args, **kwargs):
        raise RuntimeError("the catch-up failed")

    monkeypatch.setattr(room_consumers, "_opened", broken)  # the connect's database call
    socket = await connect(f"/ws/rooms/{room.slug}/?after=0", alice)
    closed = await socket.receive_output(timeout=3)
    assert closed == {"type": "websocket.close", "code": 1011}
    await socket.send_input({"type": "websocket.disconnect", "code": 1011})
    await asyncio.sleep(0.1)
    assert _subscribers() == before


@pytest.mark.django_db(transaction=True)
async def test_a_cancelled_socket_leaves_the_hub(alice, room):
    """A server shutting down cancels its sockets' tasks: none stays subscribed."""
    before = _subscribers()
    cookie = await database_sync_to_async(cookie_of)(alice)
    headers = [
        (b"host", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"cookie", cookie.encode()),
    ]
    socket = WebsocketCommunicator(application, f"/ws/rooms/{room.slug}/", headers=headers)
    assert (await socket.connect(timeout=5))[0]
    await joined(socket)
    socket.future.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await socket.future
    assert _subscribers() == before


@pytest.mark.django_db(transaction=True)
async def test_refused_frames_store_nothing_and_get_their_error(connect, alice, room):
    await database_sync_to_async(messages_make)(room, alice, 1)
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    for frame, code in REFUSED:
        await socket.send_json_to(frame)
        assert (await receive(socket)).get("code") == code, frame
    for body, stored in ACCEPTED:
        await socket.send_json_to({"type": "message", "body": body})
        assert (await receive(socket))["body"] == stored


# ---------------------------------------------------------------------------------------------
# The same through the real server, on SQLite and on PostgreSQL


@contextlib.contextmanager
def _database(kind: str, workdir: Path):
    if kind == "sqlite":
        yield ""
    else:
        with postgres_server() as postgres:
            yield postgres.url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request):
    with (
        tempfile.TemporaryDirectory(prefix="chat-input-") as tmp,
        _database(request.param, Path(tmp)) as database_url,
    ):
        env = node_env(database_url=database_url, SQLITE_PATH=str(Path(tmp) / "db.sqlite3"))
        manage(env, "migrate", "--noinput")
        node = node_start(env, Path(tmp), request.param, workers=1)
        try:
            yield node
        finally:
            node.stop()


@pytest.mark.server
def test_the_database_never_sees_what_it_cannot_store(server):
    session = signup(server.url, "alice")
    path = room_create(session, "Strict input")
    cookie = cookie_header(session)

    async def scenario():
        # A catch-up from past the 64-bit range is clamped, not a crash (it dropped the socket).
        url = f"{server.ws_url}/ws{path}?after=99999999999999999999999"
        socket = await RecordedSocket.open(url, server.url, cookie)
        await socket.next({"synced"})
        await socket.send(type="message", body="first")
        await socket.next({"message"})
        for frame, code in REFUSED:
            await socket.send(**frame)
            answer = await socket.next({"error", "message"})
            assert answer.get("code") == code, (frame, answer)
        for body, _ in ACCEPTED:
            await socket.send(type="message", body=body)
            await socket.next({"message"})
        assert socket.close_code is None  # never dropped
        await socket.close()
        return await history(server.ws_url, server.url, path, cookie)

    stored = asyncio.run(scenario())
    assert [m["body"] for m in stored] == ["first", *(shown for _, shown in ACCEPTED)]
    assert "Traceback" not in server.log()
