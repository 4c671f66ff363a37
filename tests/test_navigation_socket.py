"""The navigation frames over real sockets: ``read``, ``history`` and the live sidebar frames
every page's socket carries (``read``, ``room.activity``, ``room.unread``, ``room.added``,
``room.removed``); docs/protocol.md."""

import pytest
from channels.db import database_sync_to_async

from rooms import services
from rooms.models import Membership

from .conftest import joined, receive, receive_type
from .factories import messages_make, user_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture
def carol(db):
    return user_create("carol")


async def page_socket(connect, user):
    """The socket of a page without a room (``/ws/notifications/``), its sidebar loaded."""
    socket = await connect("/ws/notifications/", user)
    assert (await receive(socket))["type"] == "notification.unread"
    return socket


async def say(room, author, body="hi"):
    create = database_sync_to_async(services.message_create)
    return await create(room=room, author=author, body=body)


@database_sync_to_async
def marker(user, room) -> int:
    return Membership.objects.get(user=user, room=room).last_read_seq


async def test_reading_in_one_tab_tells_the_users_other_tabs(connect, alice, bob, room):
    await database_sync_to_async(services.room_join)(room=room, user=bob)
    await database_sync_to_async(messages_make)(room, alice, 3)
    tab = await connect(f"/ws/rooms/{room.slug}/", bob)
    await joined(tab)
    other = await page_socket(connect, bob)
    await tab.send_json_to({"type": "read", "seq": 2})
    assert await receive_type(other, "read") == {
        "type": "read",
        "room": room.slug,
        "seq": 2,
        "unread": 1,
    }
    assert await marker(bob, room) == 2


async def test_the_room_tab_hears_the_read_with_its_own_rooms_exact_count(
    connect, alice, bob, room
):
    """The room socket's own count is no hub subscriber of the room (one delivery per message
    per socket), yet its read frames carry the exact count, recounted when the socket has seen
    changes after the read's seq."""
    from realtime.events import room_group
    from realtime.hub import get_hub

    await database_sync_to_async(services.room_join)(room=room, user=bob)
    await database_sync_to_async(messages_make)(room, alice, 3)
    tab = await connect(f"/ws/rooms/{room.slug}/?after=0", bob)
    await receive_type(tab, "synced")
    other = await connect(f"/ws/rooms/{room.slug}/", bob)
    await joined(other)
    assert len(get_hub().groups[room_group(room.pk)]) == 2  # the two sockets, nothing more
    await other.send_json_to({"type": "read", "seq": 1})
    assert await receive_type(tab, "read") == {
        "type": "read",
        "room": room.slug,
        "seq": 1,
        "unread": 2,
    }
    await say(room, alice)  # seen by the tab: a later read's count is checked against it
    await receive_type(tab, "message")
    await other.send_json_to({"type": "read", "seq": 2})
    read = await receive_type(tab, "read")
    unread = read["unread"]
    if unread != 2:  # told before the recount: the recount corrects it
        unread = (await receive_type(tab, "room.unread"))["unread"]
    assert unread == 2  # messages 3 and 4


async def test_the_marker_never_moves_back_and_an_old_read_says_nothing(connect, alice, bob, room):
    await database_sync_to_async(services.room_join)(room=room, user=bob)
    await database_sync_to_async(messages_make)(room, alice, 5)
    tab = await connect(f"/ws/rooms/{room.slug}/", bob)
    await joined(tab)
    other = await page_socket(connect, bob)
    await tab.send_json_to({"type": "read", "seq": 4})
    assert (await receive_type(other, "read"))["seq"] == 4
    await tab.send_json_to({"type": "read", "seq": 1})
    await tab.send_json_to({"type": "read", "seq": 4})
    assert await other.receive_nothing(timeout=0.5)
    assert await marker(bob, room) == 4


async def test_a_message_elsewhere_raises_the_count_on_every_page(connect, alice, bob, room):
    await database_sync_to_async(services.room_join)(room=room, user=bob)
    sidebar = await page_socket(connect, bob)
    for expected in (1, 2):
        message = await say(room, alice)
        assert await receive_type(sidebar, "room.activity") == {
            "type": "room.activity",
            "room": room.slug,
            "seq": message.seq,
            "unread": expected,
        }
    # The user's own message is activity (the room moves up), not unread.
    await say(room, bob)
    assert (await receive_type(sidebar, "room.activity"))["unread"] == 2


async def test_a_deleted_unread_message_lowers_the_count_live(connect, alice, bob, room):
    await database_sync_to_async(services.room_join)(room=room, user=bob)
    sidebar = await page_socket(connect, bob)
    first = await say(room, alice)
    await say(room, alice)
    await receive_type(sidebar, "room.activity")
    await receive_type(sidebar, "room.activity")
    await database_sync_to_async(services.message_delete)(message=first, user=alice)
    assert await receive_type(sidebar, "room.unread") == {
        "type": "room.unread",
        "room": room.slug,
        "unread": 1,
    }


async def test_counts_loaded_at_connect_and_live_ones_add_up_exactly(connect, alice, bob, room):
    await database_sync_to_async(services.room_join)(room=room, user=bob)
    await database_sync_to_async(messages_make)(room, alice, 4)
    sidebar = await page_socket(connect, bob)
    await say(room, alice)
    assert (await receive_type(sidebar, "room.activity"))["unread"] == 5


async def test_a_private_room_sends_nothing_to_a_non_member(connect, alice, carol):
    secret = await database_sync_to_async(services.room_create)(
        name="Secret", created_by=alice, private=True
    )
    outsider = await page_socket(connect, carol)
    await say(secret, alice, "the plan")
    assert await outsider.receive_nothing(timeout=0.5)


async def test_being_added_and_removed_follows_the_sidebar_live(connect, alice, bob):
    secret = await database_sync_to_async(services.room_create)(
        name="Secret", created_by=alice, private=True
    )
    await say(secret, alice, "before bob")
    sidebar = await page_socket(connect, bob)
    await database_sync_to_async(services.member_add)(room=secret, by=alice, user=bob)
    assert (await receive_type(sidebar, "room.added"))["room"]["slug"] == secret.slug
    # The watch is set up in the background: a message later is counted, the earlier one not.
    await _until_watched(sidebar, secret, alice)
    await database_sync_to_async(services.member_remove)(room=secret, by=alice, user=bob)
    assert await receive_type(sidebar, "room.removed") == {
        "type": "room.removed",
        "room": secret.slug,
    }
    await say(secret, alice, "after bob")
    assert await sidebar.receive_nothing(timeout=0.5)


async def _until_watched(sidebar, room, author) -> None:
    """Post until the sidebar counts the room (a timed-out receive would end the socket)."""
    for _ in range(20):
        await say(room, author, "are you there?")
        if await sidebar.receive_nothing(timeout=0.3):
            continue
        frame = await receive_type(sidebar, "room.activity")
        assert 1 <= frame["unread"] <= 20
        return
    raise AssertionError("the room was never watched")


async def test_history_pages_back_to_the_first_message(connect, alice, room):
    messages = await database_sync_to_async(messages_make)(room, alice, 120)
    await database_sync_to_async(services.message_edit)(message=messages[3], user=alice, body="x")
    await database_sync_to_async(services.message_delete)(message=messages[50], user=alice)
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    seen, before, more = [], 10**6, True
    while more:
        await socket.send_json_to({"type": "history", "before": before, "limit": 50})
        page = await receive_type(socket, "history")
        assert page["before"] == before
        seen = page["messages"] + seen
        before, more = page["messages"][0]["seq"], page["more"]
    assert [m["id"] for m in seen] == [m.pk for m in messages if m.pk != messages[50].pk]
    assert seen[3]["body"] == "x" and seen[3]["edited"]
    assert {m["type"] for m in seen} == {"message"}


async def test_history_after_pages_forward(connect, alice, room):
    await database_sync_to_async(messages_make)(room, alice, 10)
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    await socket.send_json_to({"type": "history", "after": 7})
    page = await receive_type(socket, "history")
    assert [m["seq"] for m in page["messages"]] == [8, 9, 10]
    assert page["more"] is False and page["after"] == 7


BAD_FRAMES = [
    ({"type": "history"}, "invalid_history"),
    ({"type": "history", "before": 5, "after": 1}, "invalid_history"),
    ({"type": "history", "before": -1}, "invalid_before"),
    ({"type": "history", "before": "9"}, "invalid_before"),
    ({"type": "history", "after": True}, "invalid_after"),
    ({"type": "history", "before": 2**63}, "invalid_before"),
    ({"type": "history", "before": 5, "limit": 0}, "invalid_limit"),
    ({"type": "history", "before": 5, "limit": 101}, "invalid_limit"),
    ({"type": "history", "before": 5, "limit": 2.5}, "invalid_limit"),
    ({"type": "read"}, "invalid_seq"),
    ({"type": "read", "seq": -3}, "invalid_seq"),
    ({"type": "read", "seq": [1]}, "invalid_seq"),
]


async def test_bad_history_and_read_frames_get_a_clear_error_and_the_socket_serves_on(
    connect, alice, room
):
    await database_sync_to_async(messages_make)(room, alice, 2)
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    for frame, code in BAD_FRAMES:
        await socket.send_json_to(frame)
        error = await receive_type(socket, "error")
        assert error["code"] == code, frame
        assert error["detail"]
    await socket.send_json_to({"type": "history", "before": 3, "limit": 100})
    assert len((await receive_type(socket, "history"))["messages"]) == 2


async def test_a_removed_member_gets_no_history(connect, alice, bob):
    secret = await database_sync_to_async(services.room_create)(
        name="Secret", created_by=alice, private=True
    )
    await database_sync_to_async(services.member_add)(room=secret, by=alice, user=bob)
    await database_sync_to_async(messages_make)(secret, alice, 3)
    socket = await connect(f"/ws/rooms/{secret.slug}/", bob)
    await joined(socket)
    # Removed behind the socket's back (the membership row only, no close event): the history
    # service checks the access rule itself.
    await database_sync_to_async(Membership.objects.filter(room=secret, user=bob).delete)()
    await socket.send_json_to({"type": "history", "before": 10})
    error = await receive_type(socket, "error")
    assert error["code"] == "forbidden"


async def test_joining_and_leaving_a_public_room_follows_the_sidebar_live(
    connect, alice, bob, room
):
    sidebar = await page_socket(connect, bob)
    await database_sync_to_async(services.room_join)(room=room, user=bob)
    assert (await receive_type(sidebar, "room.added"))["room"]["slug"] == room.slug
    await _until_watched(sidebar, room, alice)
    await database_sync_to_async(services.member_leave)(room=room, user=bob)
    assert await receive_type(sidebar, "room.removed") == {
        "type": "room.removed",
        "room": room.slug,
    }
    await say(room, alice, "after bob left")
    assert await sidebar.receive_nothing(timeout=0.5)
