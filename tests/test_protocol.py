"""Every line of docs/protocol.md, proved with WebsocketCommunicator against the real router."""

import asyncio
from datetime import datetime

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from chatproject.asgi import application
from rooms.models import Message
from rooms.services import message_create

from .conftest import joined, receive, session_cookie
from .factories import messages_make, room_make

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def stored_count() -> int:
    return await Message.objects.acount()


async def test_message_is_stored_then_sent_to_every_socket_in_the_room_sender_included(
    connect, alice, bob, room
):
    path = f"/ws/rooms/{room.slug}/"
    a, b = await connect(path, alice), await connect(path, bob)
    await a.send_json_to({"type": "message", "body": "hello <b>bob</b>"})
    frames = [await receive(a), await receive(b)]
    message = await Message.objects.select_related("author").aget()
    for frame in frames:
        assert frame == {
            "type": "message",
            "id": message.pk,
            "seq": 1,
            "room": room.slug,
            "user": "alice",
            "body": "hello <b>bob</b>",
            # The text as written, and as shown: Markdown rendered, raw HTML escaped.
            "html": "<p>hello &lt;b&gt;bob&lt;/b&gt;</p>",
            "created": frame["created"],
            "client_id": None,
            "reply_to": None,
            "reply": None,
            "edited": None,
            "reactions": {},
        }
        created = datetime.fromisoformat(frame["created"].replace("Z", "+00:00"))
        assert created == message.created
        assert frame["created"].endswith("Z")


async def test_seq_counts_the_rooms_messages_without_gaps(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    for i in range(5):
        await socket.send_json_to({"type": "message", "body": f"m{i}"})
    seqs = [(await receive(socket))["seq"] for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]


async def test_other_rooms_do_not_receive_the_message(connect, alice, bob, room):
    other = await database_sync_to_async(room_make)("Elsewhere")
    here = await connect(f"/ws/rooms/{room.slug}/", alice)
    there = await connect(f"/ws/rooms/{other.slug}/", bob)
    await here.send_json_to({"type": "message", "body": "only here"})
    assert (await receive(here))["body"] == "only here"
    assert await there.receive_nothing(timeout=0.3)


async def test_author_is_the_socket_user_whatever_the_frame_claims(connect, alice, bob, room):
    other = await database_sync_to_async(room_make)("Elsewhere")
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await socket.send_json_to(
        {"type": "message", "body": "hi", "user": "bob", "room": other.slug, "author": bob.pk}
    )
    frame = await receive(socket)
    assert frame["user"] == "alice"
    assert frame["room"] == room.slug
    message = await Message.objects.aget()
    assert (message.author_id, message.room_id) == (alice.pk, room.pk)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('{"body": "no type"}', "invalid_frame"),
        ('{"type": "shout", "body": "x"}', "unknown_type"),
        ('{"type": "message", "body": ""}', "empty_body"),
        ('{"type": "message", "body": "   "}', "empty_body"),
        ('{"type": "message"}', "invalid_body"),
        ('{"type": "message", "body": 42}', "invalid_body"),
        ('{"type": "sync", "after": "x"}', "invalid_after"),
    ],
)
async def test_bad_frames_get_an_error_and_store_nothing_and_the_socket_stays_open(
    connect, alice, bob, room, raw, code
):
    path = f"/ws/rooms/{room.slug}/"
    socket, other = await connect(path, alice), await connect(path, bob)
    await socket.send_to(text_data=raw)
    error = await receive(socket)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["detail"]
    assert await other.receive_nothing(timeout=0.2)
    assert await stored_count() == 0
    await socket.send_json_to({"type": "message", "body": "still here"})
    assert (await receive(socket))["body"] == "still here"


async def test_binary_frames_are_refused_with_an_error(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await socket.send_to(bytes_data=b"\x00\x01")
    assert (await receive(socket))["code"] == "binary_frame"


@override_settings(CHAT_MESSAGE_MAX_LENGTH=10)
async def test_body_over_the_limit_is_refused(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await socket.send_json_to({"type": "message", "body": "x" * 11})
    error = await receive(socket)
    assert error["code"] == "body_too_long"
    assert "10" in error["detail"]
    await socket.send_json_to({"type": "message", "body": "x" * 10})
    assert (await receive(socket))["seq"] == 1


async def test_default_body_limit_is_4000_characters(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await socket.send_json_to({"type": "message", "body": "x" * 4001})
    assert (await receive(socket))["code"] == "body_too_long"
    await socket.send_json_to({"type": "message", "body": "x" * 4000})
    assert (await receive(socket))["type"] == "message"


@override_settings(CHAT_RATE_PER_SECOND=1, CHAT_RATE_BURST=3)
async def test_a_flood_is_rate_limited_without_disturbing_others(connect, alice, bob, room):
    path = f"/ws/rooms/{room.slug}/"
    flooder, other = await connect(path, alice), await connect(path, bob)
    for i in range(6):
        await flooder.send_json_to({"type": "message", "body": f"flood {i}"})
    frames = [await receive(flooder) for _ in range(6)]
    assert [f["type"] for f in frames].count("message") == 3
    assert [f.get("code") for f in frames].count("rate_limited") == 3
    assert await stored_count() == 3
    await other.send_json_to({"type": "message", "body": "I can still talk"})
    assert (await receive(other, timeout=3))["type"] == "message"


async def test_sync_sends_the_stored_messages_after_a_seq_in_order(connect, alice, room):
    await database_sync_to_async(messages_make)(room, alice, 5)
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await socket.send_json_to({"type": "sync", "after": 2})
    frames = [await receive(socket) for _ in range(4)]
    assert [f["seq"] for f in frames[:3]] == [3, 4, 5]
    assert frames[3] == {"type": "synced", "last_seq": 5, "more": False}


@override_settings(CHAT_SYNC_LIMIT=3)
async def test_sync_is_capped_and_says_more_remain(connect, alice, room):
    await database_sync_to_async(messages_make)(room, alice, 7)
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await socket.send_json_to({"type": "sync", "after": 0})
    frames = [await receive(socket) for _ in range(4)]
    assert [f["seq"] for f in frames[:3]] == [1, 2, 3]
    assert frames[3] == {"type": "synced", "last_seq": 3, "more": True}
    await socket.send_json_to({"type": "sync", "after": 6})
    frames = [await receive(socket) for _ in range(2)]
    assert frames[0]["seq"] == 7
    assert frames[1] == {"type": "synced", "last_seq": 7, "more": False}


async def test_catch_up_on_connect_sends_what_was_missed(connect, alice, room):
    await database_sync_to_async(messages_make)(room, alice, 4)
    socket = await connect(f"/ws/rooms/{room.slug}/?after=1", alice)
    frames = [await receive(socket) for _ in range(4)]
    assert [f["seq"] for f in frames[:3]] == [2, 3, 4]
    assert frames[3]["type"] == "synced"


async def test_message_stored_while_connecting_arrives_exactly_once(connect, alice, bob, room):
    """Messages stored during catch-up come once: in the catch-up or live, never both."""
    await database_sync_to_async(messages_make)(room, alice, 3)
    writer = await connect(f"/ws/rooms/{room.slug}/", alice)

    async def write_during_connect():
        for i in range(20):
            await writer.send_json_to({"type": "message", "body": f"live {i}"})
            await asyncio.sleep(0)

    task = asyncio.create_task(write_during_connect())
    reader = await connect(f"/ws/rooms/{room.slug}/?after=0", bob)
    await task
    seqs = []
    while len(seqs) < 23:
        frame = await receive(reader)
        if frame["type"] == "message":
            seqs.append(frame["seq"])
    assert await reader.receive_nothing(timeout=0.3)
    assert sorted(seqs) == list(range(1, 24))
    assert len(seqs) == len(set(seqs))


async def test_anonymous_socket_is_refused_with_4401(connect, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", None, expect_accept=False)
    if socket.accepted:
        assert await socket.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
    await socket.send_json_to({"type": "message", "body": "anonymous"})
    await asyncio.sleep(0.1)
    assert await stored_count() == 0


async def test_unknown_room_is_closed_with_4404(connect, alice, db):
    socket = await connect("/ws/rooms/no-such-room/", alice)
    assert await socket.receive_output(timeout=2) == {"type": "websocket.close", "code": 4404}


async def test_foreign_origin_is_refused(connect, alice, room):
    socket = await connect(
        f"/ws/rooms/{room.slug}/", alice, origin="https://evil.example", expect_accept=False
    )
    assert not socket.accepted


async def test_message_from_a_service_call_reaches_connected_sockets(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    await database_sync_to_async(message_create)(room=room, author=alice, body="from code")
    assert (await receive(socket))["body"] == "from code"


async def test_a_session_invalidated_by_a_password_change_is_refused_with_4401(
    connect, alice, room
):
    cookie = await database_sync_to_async(session_cookie)(alice)

    def change_password() -> None:
        alice.set_password("a-brand-new-password-42")
        alice.save()

    await database_sync_to_async(change_password)()
    headers = [
        (b"host", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"cookie", f"sessionid={cookie}".encode()),
    ]
    socket = WebsocketCommunicator(application, f"/ws/rooms/{room.slug}/", headers=headers)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    assert await socket.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
    await socket.disconnect()
