"""Notifications: the service, the command, live delivery over sockets, read state, mentions."""

from io import StringIO

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

from notifications.models import Delivery, Notification
from notifications.selectors import unread_count
from notifications.services import notifications_mark_read, notify
from notifications.validators import validate_link
from rooms.services import message_create

from .conftest import joined, receive, receive_type
from .factories import user_create

pytestmark = [pytest.mark.django_db(transaction=True)]


async def open_notifications(connect, user) -> object:
    """A ``/ws/notifications/`` socket; its first frame is the unread count."""
    socket = await connect("/ws/notifications/", user)
    return socket


def usernames(notification: Notification) -> set[str]:
    return set(
        Delivery.objects.filter(notification=notification).values_list("user__username", flat=True)
    )


# --- the command ----------------------------------------------------------------------------


def test_command_without_audience_reaches_every_active_user(alice, bob):
    idle = user_create("idle")
    idle.is_active = False
    idle.save()
    out = StringIO()
    call_command("notifications", "Maintenance at 18:00", stdout=out, stderr=StringIO())
    notification = Notification.objects.get()
    assert usernames(notification) == {"alice", "bob"}
    assert notification.audience == "everyone"
    assert notification.recipients == 2
    assert "sent to 2 users" in out.getvalue()


def test_command_users_reaches_only_those_users(alice, bob):
    user_create("carol")
    out = StringIO()
    call_command(
        "notifications",
        "Hello",
        "--users",
        "alice",
        "carol",
        "--level",
        "warning",
        "--link",
        "/rooms/",
        stdout=out,
        stderr=StringIO(),
    )
    notification = Notification.objects.get()
    assert usernames(notification) == {"alice", "carol"}
    assert (notification.level, notification.link) == ("warning", "/rooms/")
    assert "sent to 2 users" in out.getvalue()


def test_command_room_reaches_its_members_who_posted_joined_or_created_it(alice, bob, room):
    user_create("dave")  # dave never opened the room
    carol = user_create("carol")
    message_create(room=room, author=carol, body="hi")
    visitor = Client()
    visitor.force_login(bob)
    assert visitor.get(f"/rooms/{room.slug}/").status_code == 200  # opening it joins it
    out = StringIO()
    call_command("notifications", "Room news", "--room", room.slug, stdout=out)
    assert usernames(Notification.objects.get()) == {"alice", "bob", "carol"}
    assert "sent to 3 users" in out.getvalue()


def test_command_dry_run_counts_and_stores_nothing(alice, bob):
    out = StringIO()
    call_command("notifications", "Not really", "--dry-run", stdout=out)
    assert "would notify 2 users" in out.getvalue()
    assert not Notification.objects.exists()
    assert not Delivery.objects.exists()


def test_command_unknown_user_is_an_error_and_sends_nothing(alice):
    with pytest.raises(CommandError, match="nobody"):
        call_command("notifications", "Hi", "--users", "alice", "nobody", stdout=StringIO())
    assert not Notification.objects.exists()


def test_command_unknown_room_is_an_error(alice):
    with pytest.raises(CommandError, match="no-such-room"):
        call_command("notifications", "Hi", "--room", "no-such-room", stdout=StringIO())


def test_command_refuses_a_javascript_link(alice):
    with pytest.raises(CommandError, match="relative"):
        call_command("notifications", "Hi", "--link", "javascript:alert(1)", stdout=StringIO())
    assert not Notification.objects.exists()


def test_command_shows_progress_on_long_runs(alice, monkeypatch):
    for i in range(12):
        user_create(f"many{i}")
    monkeypatch.setattr("notifications.management.commands.notifications.BATCH_SIZE", 5)
    monkeypatch.setattr("notifications.services.BATCH_SIZE", 5)
    out = StringIO()
    call_command("notifications", "Many", stdout=out, stderr=StringIO())
    assert f"[{'#' * 30}] 13/13 users" in out.getvalue()
    assert Delivery.objects.count() == 13


def test_progress_is_reported_after_each_batch():
    for i in range(13):
        user_create(f"many{i}")
    calls: list[tuple[int, int]] = []
    result = notify(text="Batched", batch_size=4, progress=lambda *call: calls.append(call))
    assert calls == [(4, 13), (8, 13), (12, 13), (13, 13)]
    assert Delivery.objects.filter(notification=result.notification).count() == 13


# --- the service ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    ["/rooms/general/", "https://example.org/x?y=1", "http://example.org", "page#part", ""],
)
def test_relative_and_http_links_are_allowed(link):
    validate_link(link)


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "java\tscript:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        "/\\evil.example/",
        "ftp://example.org/",
        "mailto:a@example.org",
        "https:///nohost",
    ],
)
def test_other_links_are_refused(link, alice):
    with pytest.raises(ValidationError):
        validate_link(link)
    with pytest.raises(ValidationError):
        notify(text="x", link=link)
    assert not Notification.objects.exists()


def test_empty_text_and_unknown_level_are_refused(alice):
    with pytest.raises(ValidationError):
        notify(text="   ")
    with pytest.raises(ValidationError):
        notify(text="x", level="shouting")


def test_broadcast_bulk_inserts_in_batches_and_sends_one_group_message(monkeypatch):
    for i in range(25):
        user_create(f"u{i}")
    layer = get_channel_layer()
    groups: list[str] = []
    original = layer.group_send

    async def counting_group_send(group, message):
        groups.append(group)
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", counting_group_send)
    result = notify(text="To all", batch_size=4)
    assert result.recipients == 25
    assert Delivery.objects.filter(notification=result.notification).count() == 25
    assert groups == ["everyone"]


def test_targeted_send_goes_to_each_recipients_group(alice, bob, monkeypatch):
    user_create("carol")
    layer = get_channel_layer()
    groups: list[str] = []

    async def recording_group_send(group, message):
        groups.append(group)

    monkeypatch.setattr(layer, "group_send", recording_group_send)
    notify(text="Just you two", users=[alice, bob], batch_size=1)
    assert sorted(groups) == sorted([f"user-{alice.pk}", f"user-{bob.pk}"])


def test_nothing_is_announced_when_the_transaction_rolls_back(alice, monkeypatch):
    from django.db import transaction

    layer = get_channel_layer()
    groups: list[str] = []

    async def recording_group_send(group, message):
        groups.append(group)

    monkeypatch.setattr(layer, "group_send", recording_group_send)
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(text="Never mind")
        raise RuntimeError
    assert groups == []
    assert not Notification.objects.exists()


def test_offline_user_finds_the_notification_and_unread_count_later(alice, bob):
    notify(text="While you were away", link="/rooms/")
    notify(text="Only Bob", users=[bob])
    assert unread_count(user=alice) == 1
    assert unread_count(user=bob) == 2
    notifications_mark_read(user=bob)
    assert unread_count(user=bob) == 0
    assert unread_count(user=alice) == 1


# --- live delivery --------------------------------------------------------------------------


async def test_a_broadcast_reaches_every_connected_user_with_their_own_unread_count(
    connect, alice, bob, room
):
    carol = await database_sync_to_async(user_create)("carol")
    await database_sync_to_async(notify)(text="Earlier", users=[bob])
    a = await open_notifications(connect, alice)
    b = await open_notifications(connect, bob)
    c = await connect(f"/ws/rooms/{room.slug}/", carol)  # a room page reuses its socket
    assert await receive(a) == {"type": "notification.unread", "unread": 0}
    assert await receive(b) == {"type": "notification.unread", "unread": 1}

    result = await database_sync_to_async(notify)(
        text="Deploy <b>done</b>", level="success", link="/rooms/"
    )
    expected = {
        "type": "notification",
        "id": result.notification.pk,
        "level": "success",
        "text": "Deploy <b>done</b>",
        "link": "/rooms/",
    }
    frames = {"alice": await receive(a), "bob": await receive(b), "carol": await receive(c)}
    for frame in frames.values():
        assert {k: frame[k] for k in expected} == expected
        assert frame["created"].endswith("Z")
    assert frames["alice"]["unread"] == 1
    assert frames["bob"]["unread"] == 2
    assert frames["carol"]["unread"] == 1


async def test_a_targeted_notification_reaches_only_its_recipients(connect, alice, bob):
    a = await open_notifications(connect, alice)
    b = await open_notifications(connect, bob)
    await receive(a), await receive(b)
    await database_sync_to_async(notify)(text="For Bob", users=[bob])
    frame = await receive(b)
    assert (frame["text"], frame["unread"]) == ("For Bob", 1)
    assert await a.receive_nothing(timeout=0.3)


async def test_anonymous_notifications_socket_is_closed_4401(connect):
    socket = await connect("/ws/notifications/", None)
    closed = await socket.receive_output(timeout=3)
    assert closed == {"type": "websocket.close", "code": 4401}


async def test_a_user_who_signed_up_after_a_broadcast_does_not_count_it(connect, alice):
    result = await database_sync_to_async(notify)(text="Before you came")
    late = await database_sync_to_async(user_create)("late")
    socket = await open_notifications(connect, late)
    assert await receive(socket) == {"type": "notification.unread", "unread": 0}
    # The broadcast's event can still be in flight when a new user connects; replay it.
    from notifications.events import notification_payload

    payload = notification_payload(result.notification, user_max=alice.pk)
    await get_channel_layer().group_send(
        "everyone", {"type": "hub.event", "group": "everyone", "payload": payload}
    )
    assert await socket.receive_nothing(timeout=0.3)


async def test_marking_read_updates_the_count_in_every_tab_of_that_user_only(
    connect, alice, bob, room
):
    first = await database_sync_to_async(notify)(text="One", users=[alice, bob])
    await database_sync_to_async(notify)(text="Two", users=[alice])
    tab1 = await open_notifications(connect, alice)
    tab2 = await connect(f"/ws/rooms/{room.slug}/", alice)
    other = await open_notifications(connect, bob)
    assert (await receive(tab1))["unread"] == 2
    await receive(other)

    await database_sync_to_async(notifications_mark_read)(user=alice, ids=[first.notification.pk])
    for tab in (tab1, tab2):
        frame = await receive_type(tab, "notification.read")
        assert frame == {
            "type": "notification.read",
            "ids": [first.notification.pk],
            "unread": 1,
        }
    await database_sync_to_async(notifications_mark_read)(user=alice)
    for tab in (tab1, tab2):
        assert await receive_type(tab, "notification.read") == {
            "type": "notification.read",
            "ids": None,
            "unread": 0,
        }
    assert await other.receive_nothing(timeout=0.3)


async def test_a_notification_after_mark_read_counts_from_the_new_total(connect, alice):
    await database_sync_to_async(notify)(text="Old", users=[alice])
    socket = await open_notifications(connect, alice)
    assert (await receive(socket))["unread"] == 1
    await database_sync_to_async(notifications_mark_read)(user=alice)
    assert (await receive(socket))["unread"] == 0
    await database_sync_to_async(notify)(text="New", users=[alice])
    assert (await receive(socket))["unread"] == 1


async def test_a_notification_stored_while_the_socket_joins_is_counted_once(
    connect, alice, monkeypatch
):
    """Stored after the socket joined its groups but before it loaded the count."""
    from notifications import consumers

    original = consumers.selectors.unread_snapshot
    sent: list[int] = []

    def snapshot_after_a_send(*, user_id):
        if not sent:
            sent.append(notify(text="Racing", users=[alice]).notification.pk)
        return original(user_id=user_id)

    monkeypatch.setattr(consumers.selectors, "unread_snapshot", snapshot_after_a_send)
    socket = await open_notifications(connect, alice)
    frames = [await receive(socket), await receive(socket)]
    by_type = {frame["type"]: frame for frame in frames}
    assert by_type["notification"]["id"] == sent[0]
    assert by_type["notification"]["unread"] == 1
    assert by_type["notification.unread"]["unread"] == 1


async def test_a_long_lived_socket_keeps_counting_past_its_bound_of_remembered_ids(
    connect, alice, monkeypatch
):
    from notifications import consumers

    monkeypatch.setattr(consumers, "RECENT_LIMIT", 2)
    socket = await open_notifications(connect, alice)
    assert (await receive(socket))["unread"] == 0
    for expected in range(1, 6):
        await database_sync_to_async(notify)(text=f"n{expected}", users=[alice])
        assert (await receive(socket))["unread"] == expected
    await database_sync_to_async(notifications_mark_read)(user=alice)
    assert (await receive(socket))["unread"] == 0
    await database_sync_to_async(notify)(text="after", users=[alice])
    assert (await receive(socket))["unread"] == 1


async def test_command_delivers_live_to_connected_users(connect, alice, bob):
    a = await open_notifications(connect, alice)
    await receive(a)
    out = StringIO()
    await database_sync_to_async(call_command)(
        "notifications", "From the command", "--users", "alice", stdout=out, stderr=StringIO()
    )
    frame = await receive(a)
    assert (frame["text"], frame["unread"]) == ("From the command", 1)


# --- mentions -------------------------------------------------------------------------------


async def test_a_mention_notifies_that_user_with_a_link_to_the_message(connect, alice, bob, room):
    b = await open_notifications(connect, bob)
    await receive(b)
    chat = await connect(f"/ws/rooms/{room.slug}/", alice)
    await chat.send_json_to({"type": "message", "body": "lunch, @bob? and @nobody, me @alice"})
    message = await receive(chat)
    frame = await receive(b)
    assert frame["text"] == f"alice mentioned you in {room.name}: {message['body']}"
    assert frame["link"] == f"/rooms/{room.slug}/?around={message['seq']}"
    assert frame["unread"] == 1
    # Nobody else was mentioned: the author mentioning themselves is not notified.
    assert await Delivery.objects.acount() == 1
    assert await chat.receive_nothing(timeout=0.3)


def test_a_message_without_mentions_costs_no_extra_query(alice, room, django_assert_num_queries):
    # savepoint, UPDATE ... RETURNING the seq, INSERT, release: nothing for mentions
    with django_assert_num_queries(4):
        message_create(room=room, author=alice, body="plain message")


def test_an_email_address_is_not_a_mention(alice, bob, room):
    message_create(room=room, author=alice, body="write to bob@example.org")
    assert not Notification.objects.exists()


async def test_a_recovering_hub_resyncs_a_room_socket_once_not_once_per_group(connect, alice, room):
    """The room socket is in three groups; the hub's recovery tells each group's sockets."""
    from realtime.hub import get_hub

    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    await joined(socket)
    await database_sync_to_async(message_create)(room=room, author=alice, body="stored")
    assert (await receive(socket))["seq"] == 1
    # The socket itself, not its sidebar's watch of the room (rooms/sidebar.py).
    consumer = next(c for c in get_hub().groups[f"room-{room.pk}"] if hasattr(c, "frame_send"))
    assert len([g for g, members in get_hub().groups.items() if consumer in members]) == 3
    consumer.last_seq = 0  # as if the live path had lost everything
    for members in tuple(get_hub().groups.values()):
        for subscriber in tuple(members):
            subscriber.resync()
    frames = [await receive(socket) for _ in range(3)]
    assert sorted(frame["type"] for frame in frames) == [
        "message",
        "notification.unread",
        "synced",
    ]
    assert await socket.receive_nothing(timeout=0.3)
