"""Private rooms and direct conversations: every line of the access rule, by every path.

The rule (rooms/selectors.py): a user reads a room when it is public or they are its member.
A room they may not read answers exactly as an unknown one, on the page (404, same body) and on
the socket (4404, nothing before the close), and no list, form, mention or notification names
it to them.
"""

import re
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.test import Client

from notifications.models import Delivery, Notification
from rooms import services
from rooms.models import Membership, Room

from .conftest import joined, receive, receive_type
from .factories import messages_make, room_make, user_create

UNKNOWN = "no-such-room"
CLOSED_4404 = {"type": "websocket.close", "code": 4404}
CLOSED_4403 = {"type": "websocket.close", "code": 4403}


@pytest.fixture
def carol(db):
    return user_create("carol")


@pytest.fixture
def secret(alice, bob):
    """alice's private room, with bob added."""
    room = services.room_create(name="Secret Plans", created_by=alice, private=True)
    services.member_add(room=room, by=alice, user=bob)
    return room


@pytest.fixture
def direct(alice, bob):
    """The conversation of alice and bob."""
    return services.direct_open(users=[alice, bob])


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def members_of(room: Room) -> set[str]:
    return set(Membership.objects.filter(room=room).values_list("user__username", flat=True))


def listed(client: Client) -> dict[str, str]:
    """The rooms list of ``client``'s user: ``{slug: kind}``, from the markup."""
    page = client.get("/rooms/").content.decode()
    items = re.findall(r'<li class="room-item kind-(\w+)" data-slug="([^"]+)">', page)
    return {slug: kind for kind, slug in items}


def recipients(notification: Notification) -> set[str]:
    return set(
        Delivery.objects.filter(notification=notification).values_list("user__username", flat=True)
    )


async def notifications_socket(connect, user):
    """A ``/ws/notifications/`` socket past its first frame (the unread count)."""
    socket = await connect("/ws/notifications/", user)
    assert (await receive(socket))["type"] == "notification.unread"
    return socket


# --- pages ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_non_members_pages_answer_404_exactly_like_an_unknown_room(
    alice, bob, carol, secret, direct
):
    messages_make(secret, alice, 2)
    carol_client = client_for(carol)
    for suffix in ("", "members/"):
        unknown = carol_client.get(f"/rooms/{UNKNOWN}/{suffix}")
        assert unknown.status_code == 404
        for room in (secret, direct):
            response = carol_client.get(f"/rooms/{room.slug}/{suffix}")
            assert response.status_code == 404
            assert response.content == unknown.content
            assert b"Secret Plans" not in response.content
            assert b"message 0" not in response.content
    # Posting to the members page does not get a non-member in, nor tell them anything.
    for data in ({"username": "carol"}, {"leave": "1"}, {"remove": "bob"}):
        response = carol_client.post(f"/rooms/{secret.slug}/members/", data)
        assert response.status_code == 404
        assert response.content == carol_client.post(f"/rooms/{UNKNOWN}/members/", data).content
    assert members_of(secret) == {"alice", "bob"}
    # The members themselves read both.
    bob_client = client_for(bob)
    for room in (secret, direct):
        assert bob_client.get(f"/rooms/{room.slug}/").status_code == 200
        assert bob_client.get(f"/rooms/{room.slug}/members/").status_code == 200


@pytest.mark.django_db
def test_the_rooms_list_shows_only_readable_rooms_each_marked_by_kind(alice, bob, carol, secret):
    lobby = room_make("Lobby", created_by=alice)
    with_bob = services.direct_open(users=[alice, bob])
    dave = user_create("dave")
    den = services.room_create(name="Carols Den", created_by=carol, private=True)
    carol_dave = services.direct_open(users=[carol, dave])

    bob_page = client_for(bob).get("/rooms/").content.decode()
    assert listed(client_for(bob)) == {
        lobby.slug: "public",
        secret.slug: "private",
        with_bob.slug: "direct",
    }
    for text in ("Carols Den", den.slug, carol_dave.slug, "dave"):
        assert text not in bob_page
    # Each item shows its kind as a badge, and a conversation by the other members' names.
    assert '<span class="kind kind-private">Private</span>' in bob_page
    assert '<span class="kind kind-direct">Direct</span>' in bob_page
    assert '<span class="kind kind-public">Public</span>' in bob_page
    assert f'<a href="/rooms/{with_bob.slug}/">alice</a>' in bob_page

    carol_page = client_for(carol).get("/rooms/").content.decode()
    assert listed(client_for(carol)) == {
        lobby.slug: "public",
        den.slug: "private",
        carol_dave.slug: "direct",
    }
    for text in ("Secret Plans", secret.slug, with_bob.slug):
        assert text not in carol_page


@pytest.mark.django_db
def test_a_private_room_may_share_any_name_a_public_room_only_a_private_ones(alice, carol, secret):
    room_make("Lobby", created_by=alice)
    carol_client = client_for(carol)

    def create(name: str, private: bool):
        data = {"name": name, **({"private": "on"} if private else {})}
        return carol_client.post("/rooms/", data)

    for name in ("Secret Plans", "Lobby", "lobby"):
        response = create(name, private=True)
        assert response.status_code == 302, name
        room = Room.objects.get(slug=response["Location"].split("/")[2])
        assert (room.kind, room.name, room.created_by) == ("private", name, carol)
        assert response["Location"] not in ("/rooms/lobby/", secret.get_absolute_url())
    # A public room named like somebody's private room: created, nothing is revealed.
    response = create("Secret Plans", private=False)
    assert response.status_code == 302
    assert Room.objects.filter(kind="public", name="Secret Plans").count() == 1

    rooms_before = Room.objects.count()
    for name in ("Lobby", "lobby", "secret plans"):
        response = create(name, private=False)
        assert response.status_code == 200
        assert "A room with this name already exists." in response.content.decode()
    assert Room.objects.count() == rooms_before


@pytest.mark.django_db
def test_dm_reaches_the_same_conversation_from_both_sides(alice, bob, carol):
    from_alice = client_for(alice).get("/dm/bob/")
    from_bob = client_for(bob).get("/dm/alice/")
    assert from_alice.status_code == from_bob.status_code == 302
    assert from_alice["Location"] == from_bob["Location"]
    room = Room.objects.get(kind="direct")
    assert from_alice["Location"] == room.get_absolute_url()
    assert members_of(room) == {"alice", "bob"}
    assert client_for(alice).get("/dm/bob/")["Location"] == room.get_absolute_url()
    assert Room.objects.filter(kind="direct").count() == 1
    # Each side sees it by the other's name; carol cannot open it.
    assert "<h1>bob</h1>" in client_for(alice).get(room.get_absolute_url()).content.decode()
    assert "<h1>alice</h1>" in client_for(bob).get(room.get_absolute_url()).content.decode()
    assert client_for(carol).get(room.get_absolute_url()).status_code == 404
    assert client_for(alice).get("/dm/nobody/").status_code == 404


@pytest.mark.django_db
def test_the_group_form_reaches_one_room_per_set_of_people(alice, bob, carol):
    started = [
        client_for(alice).post("/dm/", {"usernames": "bob, carol"}),
        client_for(alice).post("/dm/", {"usernames": "carol bob"}),
        client_for(bob).post("/dm/", {"usernames": "carol,alice"}),
        client_for(carol).post("/dm/", {"usernames": "alice bob carol"}),  # yourself included
        client_for(carol).post("/dm/", {"usernames": "alice, bob, alice"}),
    ]
    assert {response.status_code for response in started} == {302}
    assert len({response["Location"] for response in started}) == 1
    room = Room.objects.get(kind="direct")
    assert members_of(room) == {"alice", "bob", "carol"}
    # Another set of people is another room.
    pair = client_for(alice).post("/dm/", {"usernames": "bob"})
    assert pair["Location"] != started[0]["Location"]
    assert pair["Location"] == client_for(bob).get("/dm/alice/")["Location"]


@pytest.mark.django_db
def test_the_group_form_refuses_unknown_people_and_more_than_eight(alice, bob):
    client = client_for(alice)
    response = client.post("/dm/", {"usernames": "bob zed, yan"})
    assert response.status_code == 200
    assert "No such user: zed, yan." in response.content.decode()

    others = [user_create(f"user{i}").username for i in range(8)]
    response = client.post("/dm/", {"usernames": " ".join(others)})  # nine people
    assert response.status_code == 200
    assert "A conversation has at most 8 people, you included." in response.content.decode()
    assert not Room.objects.filter(kind="direct").exists()

    response = client.post("/dm/", {"usernames": " ".join(others[:7])})  # eight people
    assert response.status_code == 302
    assert len(members_of(Room.objects.get(kind="direct"))) == 8


# --- members --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_owner_adds_and_removes_members(alice, carol, secret):
    owner = client_for(alice)
    members_page = f"/rooms/{secret.slug}/members/"
    assert client_for(carol).get(secret.get_absolute_url()).status_code == 404

    assert owner.post(members_page, {"username": "carol"}).status_code == 302
    assert members_of(secret) == {"alice", "bob", "carol"}
    assert client_for(carol).get(secret.get_absolute_url()).status_code == 200
    assert "Secret Plans" in client_for(carol).get("/rooms/").content.decode()

    assert owner.post(members_page, {"remove": "carol"}).status_code == 302
    assert members_of(secret) == {"alice", "bob"}
    assert client_for(carol).get(secret.get_absolute_url()).status_code == 404
    assert "Secret Plans" not in client_for(carol).get("/rooms/").content.decode()

    response = owner.post(members_page, {"username": "nobody"})
    assert response.status_code == 200
    assert "No such user: nobody." in response.content.decode()


@pytest.mark.django_db
def test_a_member_who_is_not_the_owner_cannot_add_or_remove(alice, bob, carol, secret):
    member = client_for(bob)
    members_page = f"/rooms/{secret.slug}/members/"
    page = member.get(members_page).content.decode()
    assert 'name="remove"' not in page
    assert 'name="username"' not in page
    assert member.post(members_page, {"username": "carol"}).status_code == 302
    assert member.post(members_page, {"remove": "alice"}).status_code == 302
    assert members_of(secret) == {"alice", "bob"}
    page = member.get(members_page).content.decode()
    assert "Only the room&#x27;s owner can" in page  # the flash says why
    # The members page links each member to a conversation.
    assert 'href="/dm/alice/"' in page


@pytest.mark.django_db
def test_staff_manage_a_private_rooms_members_without_being_one(alice, bob, carol, secret):
    staff = user_create("root")
    staff.is_staff = True
    staff.save()
    members_page = f"/rooms/{secret.slug}/members/"
    client = client_for(staff)
    assert client.get(members_page).status_code == 200
    assert client.post(members_page, {"username": "carol"}).status_code == 302
    assert client.post(members_page, {"remove": "bob"}).status_code == 302
    assert members_of(secret) == {"alice", "carol"}
    # Not a conversation's, though: those answer 404 as to anyone outside them.
    direct = services.direct_open(users=[alice, bob])
    assert client.get(f"/rooms/{direct.slug}/members/").status_code == 404


@pytest.mark.django_db
def test_any_member_can_leave_and_then_cannot_read_the_room(alice, bob, secret):
    member = client_for(bob)
    response = member.post(f"/rooms/{secret.slug}/members/", {"leave": "1"})
    assert response.status_code == 302
    assert response["Location"] == "/rooms/"
    assert members_of(secret) == {"alice"}
    assert member.get(secret.get_absolute_url()).status_code == 404
    assert member.get(f"/rooms/{secret.slug}/members/").status_code == 404
    assert secret.slug not in member.get("/rooms/").content.decode()


@pytest.mark.django_db
def test_a_removed_member_can_change_nothing_even_through_the_services(alice, bob, secret):
    """Every change re-checks membership under the room's lock, whatever path it came by."""
    message = services.message_create(room=secret, author=bob, body="before")
    services.member_remove(room=secret, by=alice, user=bob)
    seq = Room.objects.get(pk=secret.pk).last_seq
    attempts = [
        lambda: services.message_create(room=secret, author=bob, body="after"),
        lambda: services.message_edit(message=message, user=bob, body="after"),
        lambda: services.message_delete(message=message, user=bob),
        lambda: services.reaction_set(message=message, user=bob, emoji="👍", on=True),
    ]
    for attempt in attempts:
        with pytest.raises(services.ChangeRefused) as refused:
            attempt()
        assert refused.value.code == "forbidden"
    assert Room.objects.get(pk=secret.pk).last_seq == seq
    message.refresh_from_db()
    assert (message.body, message.deleted) == ("before", None)


@pytest.mark.django_db
def test_a_conversations_members_are_fixed(alice, bob, carol, direct):
    members_page = f"/rooms/{direct.slug}/members/"
    page = client_for(alice).get(members_page).content.decode()
    assert 'name="leave"' not in page
    assert 'name="remove"' not in page
    assert 'name="username"' not in page
    for data in ({"username": "carol"}, {"remove": "bob"}, {"leave": "1"}):
        for user in (alice, bob):
            response = client_for(user).post(members_page, data)
            assert response.status_code == 302
            assert response["Location"] == members_page
    assert members_of(direct) == {"alice", "bob"}
    assert client_for(carol).get(direct.get_absolute_url()).status_code == 404


# --- mentions and notifications ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_mention_in_a_private_room_notifies_members_only(alice, bob, carol, secret, direct):
    services.message_create(room=secret, author=alice, body="@carol have you seen this?")
    assert not Notification.objects.exists()

    message = services.message_create(room=secret, author=alice, body="@carol @bob look")
    notification = Notification.objects.get()
    assert recipients(notification) == {"bob"}
    assert notification.text == "alice mentioned you in Secret Plans: @carol @bob look"
    assert notification.link == f"{secret.get_absolute_url()}?around={message.seq}"

    # In a conversation too; its text names no room.
    services.message_create(room=direct, author=bob, body="@carol hello?")
    assert Notification.objects.count() == 1
    message = services.message_create(room=direct, author=bob, body="@alice hello?")
    notification = Notification.objects.first()
    assert recipients(notification) == {"alice"}
    assert notification.text == "bob mentioned you in a conversation: @alice hello?"
    assert notification.link == f"{direct.get_absolute_url()}?around={message.seq}"

    # carol, mentioned twice, has nothing that names either room.
    carol_client = client_for(carol)
    assert carol_client.get("/notifications/unread/").json()["unread"] == 0
    page = carol_client.get("/notifications/").content.decode()
    for text in ("Secret Plans", secret.slug, direct.slug, "mentioned"):
        assert text not in page
    bob_page = client_for(bob).get("/notifications/").content.decode()
    assert "alice mentioned you in Secret Plans" in bob_page


@pytest.mark.django_db
def test_the_command_reaches_a_private_rooms_members_only(alice, bob, carol, secret, direct):
    room_make("Lobby", created_by=carol)
    for room in (secret, direct):
        out = StringIO()
        call_command("notifications", "Private news", "--room", room.slug, stdout=out, stderr=out)
        assert "sent to 2 users" in out.getvalue()
        assert recipients(Notification.objects.first()) == {"alice", "bob"}
    assert not Delivery.objects.filter(user=carol).exists()


# --- sockets --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_non_members_socket_closes_with_4404_before_any_frame(
    connect, alice, bob, carol, secret
):
    direct = await database_sync_to_async(services.direct_open)(users=[alice, bob])
    await database_sync_to_async(messages_make)(secret, alice, 3)
    await database_sync_to_async(messages_make)(direct, bob, 3)
    for query in ("", "?after=0"):
        outputs = {}
        for slug in (UNKNOWN, secret.slug, direct.slug):
            socket = await connect(f"/ws/rooms/{slug}/{query}", carol)
            # The first output after the handshake is the close: no frame, no history.
            outputs[slug] = await socket.receive_output(timeout=3)
            assert await socket.receive_nothing(timeout=0.2)
        assert outputs == {slug: CLOSED_4404 for slug in outputs}


@pytest.mark.django_db(transaction=True)
async def test_sync_and_after_reveal_messages_to_members_only(connect, alice, bob, carol, secret):
    await database_sync_to_async(messages_make)(secret, alice, 3)
    member = await connect(f"/ws/rooms/{secret.slug}/?after=0", bob)
    bodies = [(await receive(member))["body"] for _ in range(3)]
    assert bodies == ["message 0", "message 1", "message 2"]
    assert (await receive(member))["type"] == "synced"

    outsider = await connect(f"/ws/rooms/{secret.slug}/?after=0", carol)
    assert await outsider.receive_output(timeout=3) == CLOSED_4404
    # A sync sent anyway (the client has not seen the close yet) is answered with nothing.
    await outsider.send_json_to({"type": "sync", "after": 0})
    await outsider.send_json_to({"type": "message", "body": "let me in"})
    assert await outsider.receive_nothing(timeout=0.3)
    assert await secret.messages.acount() == 3


@pytest.mark.django_db(transaction=True)
async def test_a_removed_member_is_closed_with_4403_and_then_refused_with_4404(
    connect, alice, bob, secret
):
    path = f"/ws/rooms/{secret.slug}/"
    owner, member = await connect(path, alice), await connect(path, bob)
    await joined(owner)
    await joined(member)

    await database_sync_to_async(services.member_remove)(room=secret, by=alice, user=bob)
    assert await member.receive_output(timeout=3) == CLOSED_4403
    # The others' sockets stay open and are told, in the room's seq order.
    assert await receive(owner) == {
        "type": "member.removed",
        "seq": 1,
        "room": secret.slug,
        "user": "bob",
    }

    # Nothing written to the room afterwards reaches the closed socket.
    await owner.send_json_to({"type": "message", "body": "after bob left"})
    assert (await receive_type(owner, "message"))["body"] == "after bob left"
    assert await member.receive_nothing(timeout=0.3)

    for query in ("", "?after=0"):
        again = await connect(path + query, bob)
        assert await again.receive_output(timeout=3) == CLOSED_4404


@pytest.mark.django_db(transaction=True)
async def test_a_member_who_leaves_is_closed_with_4403(connect, bob, secret):
    socket = await connect(f"/ws/rooms/{secret.slug}/", bob)
    await joined(socket)
    await database_sync_to_async(services.member_leave)(room=secret, user=bob)
    assert await socket.receive_output(timeout=3) == CLOSED_4403


@pytest.mark.django_db(transaction=True)
async def test_being_added_is_told_to_the_added_users_sockets_only(connect, alice, bob, carol):
    secret = await database_sync_to_async(services.room_create)(
        name="Secret Plans", created_by=alice, private=True
    )
    bob_socket = await notifications_socket(connect, bob)
    carol_socket = await notifications_socket(connect, carol)
    alice_socket = await notifications_socket(connect, alice)

    await database_sync_to_async(services.member_add)(room=secret, by=alice, user=bob)
    assert await receive(bob_socket) == {
        "type": "room.added",
        "room": {
            "slug": secret.slug,
            "name": "Secret Plans",
            "kind": "private",
            "url": secret.get_absolute_url(),
        },
    }
    direct = await database_sync_to_async(services.direct_open)(users=[alice, bob])
    assert await receive(bob_socket) == {
        "type": "room.added",
        "room": {
            "slug": direct.slug,
            "name": "alice",  # the conversation as bob calls it
            "kind": "direct",
            "url": direct.get_absolute_url(),
        },
    }
    assert await carol_socket.receive_nothing(timeout=0.3)
    assert await alice_socket.receive_nothing(timeout=0.1)  # she opened it herself


@pytest.mark.django_db(transaction=True)
async def test_a_mention_of_a_non_member_sends_them_nothing_live(
    connect, alice, bob, carol, secret
):
    bob_socket = await notifications_socket(connect, bob)
    carol_socket = await notifications_socket(connect, carol)
    room_socket = await connect(f"/ws/rooms/{secret.slug}/", alice)
    await joined(room_socket)
    await room_socket.send_json_to({"type": "message", "body": "@carol @bob plans attached"})
    frame = await receive_type(bob_socket, "notification")
    assert frame["text"] == "alice mentioned you in Secret Plans: @carol @bob plans attached"
    assert frame["link"] == f"{secret.get_absolute_url()}?around=1"
    assert await carol_socket.receive_nothing(timeout=0.5)


@pytest.mark.django_db(transaction=True)
async def test_frames_a_removed_members_socket_sends_after_its_close_are_ignored(
    connect, alice, bob, secret
):
    """A client's frames sent before it saw the 4403 reach a socket the server is closing:
    they must neither read the room (``sync``) nor write to it (``message``)."""
    path = f"/ws/rooms/{secret.slug}/"
    owner, member = await connect(path, alice), await connect(path, bob)
    await joined(owner)
    await joined(member)
    await database_sync_to_async(services.member_remove)(room=secret, by=alice, user=bob)
    assert await member.receive_output(timeout=3) == CLOSED_4403
    await owner.send_json_to({"type": "message", "body": "after bob left"})
    assert (await receive_type(owner, "message"))["body"] == "after bob left"

    await member.send_json_to({"type": "sync", "after": 0})
    await member.send_json_to({"type": "message", "body": "still here?"})
    assert await member.receive_nothing(timeout=0.5)
    assert [m.body async for m in secret.messages.order_by("seq")] == ["after bob left"]
