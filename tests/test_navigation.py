"""Read markers, unread counts, the sidebar and history pages: the rules of docs/protocol.md
("Read markers and the sidebar", "History"), through the services and selectors.

The unread count of a room is the number of messages by others after the member's
``last_read_seq`` that are not deleted. A membership starts read up to the room's seq at that
moment (the first-visit rule), and the marker never moves backwards.
"""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from rooms import selectors, services
from rooms.models import Membership, Message

from .factories import messages_make, room_make, user_create


@pytest.fixture
def carol(db):
    return user_create("carol")


def unread_of(user, room) -> int:
    return {r.slug: r.unread for r in selectors.conversations(user=user)}[room.slug]


def marker(user, room) -> int:
    return Membership.objects.get(user=user, room=room).last_read_seq


def say(room, author, body="hi"):
    return services.message_create(room=room, author=author, body=body)


# -- The first-visit rule ---------------------------------------------------------------


def test_joining_a_public_room_does_not_count_its_history(alice, bob, room):
    messages_make(room, alice, 5)
    services.room_join(room=room, user=bob)
    assert marker(bob, room) == 5
    assert unread_of(bob, room) == 0
    say(room, alice)
    assert unread_of(bob, room) == 1


def test_a_public_room_not_joined_is_not_in_the_sidebar_and_counts_nothing(alice, bob, room):
    messages_make(room, alice, 3)
    assert room.slug not in {r.slug for r in selectors.conversations(user=bob)}
    assert selectors.room_unread(user=bob, room_id=room.pk) is None
    assert services.read_mark(user=bob, room=room, seq=3) is None


def test_being_added_to_a_private_room_does_not_count_what_was_said_before(alice, bob):
    secret = services.room_create(name="Secret", created_by=alice, private=True)
    messages_make(secret, alice, 4)
    services.member_add(room=secret, by=alice, user=bob)
    assert unread_of(bob, secret) == 0
    say(secret, alice)
    assert unread_of(bob, secret) == 1


def test_a_new_direct_conversation_counts_every_message_of_the_other(alice, bob):
    direct = services.direct_open(users=[alice, bob])
    say(direct, alice, "one")
    say(direct, alice, "two")
    assert unread_of(bob, direct) == 2
    assert unread_of(alice, direct) == 0


# -- The count ----------------------------------------------------------------------------


def test_own_messages_are_never_unread(alice, bob, room):
    services.room_join(room=room, user=bob)
    say(room, bob)
    say(room, alice)
    assert unread_of(bob, room) == 1
    assert unread_of(alice, room) == 1


def test_an_edit_does_not_change_the_count_and_a_deletion_lowers_it(alice, bob, room):
    services.room_join(room=room, user=bob)
    first, second = say(room, alice, "a"), say(room, alice, "b")
    services.message_edit(message=first, user=alice, body="a, edited")
    services.reaction_set(message=second, user=alice, emoji="👍", on=True)
    assert unread_of(bob, room) == 2
    services.message_delete(message=first, user=alice)
    assert unread_of(bob, room) == 1


def test_changes_after_the_marker_do_not_count_as_messages(alice, bob, room):
    services.room_join(room=room, user=bob)
    message = say(room, alice)
    services.read_mark(user=bob, room=room, seq=message.seq)
    # An edit and a reaction take seqs above the marker, but they are not new messages.
    services.message_edit(message=message, user=alice, body="changed")
    services.reaction_set(message=message, user=alice, emoji="🎉", on=True)
    assert unread_of(bob, room) == 0


# -- The marker ---------------------------------------------------------------------------


def test_the_read_marker_never_moves_backwards(alice, bob, room):
    services.room_join(room=room, user=bob)
    messages_make(room, alice, 6)
    assert services.read_mark(user=bob, room=room, seq=5) == (5, 1)
    assert services.read_mark(user=bob, room=room, seq=2) is None
    assert services.read_mark(user=bob, room=room, seq=5) is None
    assert marker(bob, room) == 5
    assert unread_of(bob, room) == 1


def test_the_read_marker_stops_at_the_rooms_seq(alice, bob, room):
    services.room_join(room=room, user=bob)
    messages_make(room, alice, 2)
    assert services.read_mark(user=bob, room=room, seq=10**12) == (2, 0)
    say(room, alice)
    assert unread_of(bob, room) == 1


def test_a_removed_member_has_no_marker_and_no_count(alice, bob):
    secret = services.room_create(name="Secret", created_by=alice, private=True)
    services.member_add(room=secret, by=alice, user=bob)
    say(secret, alice)
    services.member_remove(room=secret, by=alice, user=bob)
    assert secret.slug not in {r.slug for r in selectors.conversations(user=bob)}
    assert services.read_mark(user=bob, room=secret, seq=1) is None
    assert selectors.room_unread(user=bob, room_id=secret.pk) is None


# -- The sidebar ---------------------------------------------------------------------------


def test_the_sidebar_lists_joined_private_and_direct_rooms_by_latest_activity(alice, bob, carol):
    public = room_make("Lobby", created_by=alice)
    room_make("Not joined", created_by=carol)
    secret = services.room_create(name="Secret", created_by=alice, private=True)
    direct = services.direct_open(users=[alice, bob])
    say(public, alice)
    say(direct, bob)
    say(secret, alice)
    rooms = selectors.conversations(user=alice)
    assert [(r.slug, r.title) for r in rooms] == [
        (secret.slug, "Secret"),
        (direct.slug, "bob"),
        (public.slug, "Lobby"),
    ]
    assert [r.unread for r in rooms] == [0, 1, 0]


def test_the_sidebar_takes_two_queries_whatever_the_number_of_rooms(alice, bob, carol):
    for i in range(12):
        say(room_make(f"Room {i}", created_by=alice), bob)
        say(services.direct_open(users=[alice, user_create(f"friend{i}")]), alice)
    with CaptureQueriesContext(connection) as queries:
        rooms = selectors.conversations(user=alice)
        titles = [r.title for r in rooms]
    assert len(rooms) == 24 and "friend3" in titles
    assert len(queries) == 2


def test_every_page_renders_the_sidebar_with_counts_as_data_attributes(alice, bob, room):
    services.room_join(room=room, user=bob)
    messages_make(room, alice, 3)
    client = Client()
    client.force_login(bob)
    page = client.get("/notifications/").content.decode()
    assert f'href="/rooms/{room.slug}/" data-unread="3"' in page
    assert 'aria-expanded="false"' in page


def test_a_pages_queries_do_not_grow_with_the_number_of_rooms(alice, bob):
    client = Client()
    client.force_login(bob)
    for i in range(3):
        services.room_join(room=room_make(f"R{i}", created_by=alice), user=bob)
    few = page_queries(client)
    for i in range(3, 30):
        services.room_join(room=room_make(f"R{i}", created_by=alice), user=bob)
    assert page_queries(client) == few


def page_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/notifications/").status_code == 200
    return len(queries)


# -- History pages -------------------------------------------------------------------------


def test_history_pages_give_every_message_exactly_once_in_its_current_state(alice, bob, room):
    messages = messages_make(room, alice, 130)
    services.message_edit(message=messages[7], user=alice, body="edited seven")
    for doomed in messages[40:45]:
        services.message_delete(message=doomed, user=alice)
    seen: list[Message] = []
    before, more = 10**9, True
    while more:
        page, more = selectors.messages_before(room=room, before=before, limit=17)
        assert [m.seq for m in page] == sorted(m.seq for m in page)
        seen = page + seen
        before = page[0].seq
    expected = [m.pk for m in messages[:40] + messages[45:]]
    assert [m.pk for m in seen] == expected
    assert {m.pk: m.body for m in seen}[messages[7].pk] == "edited seven"


def test_forward_pages_from_a_message_reach_the_newest_exactly_once(alice, room):
    messages = messages_make(room, alice, 60)
    services.message_delete(message=messages[30], user=alice)
    after, seen, more = messages[9].seq, [], True
    while more:
        page, more = selectors.messages_after(room=room, after=after, limit=11)
        seen += page
        after = page[-1].seq
    assert [m.pk for m in seen] == [m.pk for m in messages[10:30] + messages[31:]]


def test_a_page_that_ends_at_the_first_message_says_there_is_no_more(alice, room):
    messages_make(room, alice, 5)
    page, more = selectors.messages_before(room=room, before=6, limit=5)
    assert len(page) == 5 and more is False
    page, more = selectors.messages_before(room=room, before=6, limit=4)
    assert len(page) == 4 and more is True


# -- The room page's window: ?around=<seq>, the first unread message ------------------------


def page_config(client: Client, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 200
    return response.context["chat_config"] | {
        "seqs": [m.seq for m in response.context["chat_messages"]]
    }


def test_around_opens_on_the_messages_around_that_seq(alice, room):
    messages_make(room, alice, 200)
    client = Client()
    client.force_login(alice)
    config = page_config(client, f"/rooms/{room.slug}/?around=100")
    assert config["seqs"] == list(range(75, 125))
    assert config["around"] == 100 and config["hasOlder"] and config["hasNewer"]
    latest = page_config(client, f"/rooms/{room.slug}/?around=nonsense")
    assert latest["seqs"] == list(range(151, 201)) and not latest["hasNewer"]


def test_a_room_opens_around_the_first_unread_message_when_it_is_older_than_the_page(
    alice, bob, room
):
    services.room_join(room=room, user=bob)
    messages_make(room, alice, 120)
    services.read_mark(user=bob, room=room, seq=30)
    client = Client()
    client.force_login(bob)
    config = page_config(client, f"/rooms/{room.slug}/")
    assert 31 in config["seqs"] and config["lastReadSeq"] == 30
    assert config["hasNewer"] and config["around"] is None


def test_around_and_history_of_a_private_room_are_not_found_for_a_non_member(alice, carol):
    secret = services.room_create(name="Secret", created_by=alice, private=True)
    messages_make(secret, alice, 3)
    client = Client()
    client.force_login(carol)
    assert client.get(f"/rooms/{secret.slug}/?around=2").status_code == 404
    page = client.get("/notifications/").content.decode()
    assert secret.slug not in page and "Secret" not in page


def test_browse_rooms_marks_which_public_rooms_are_joined(alice, bob):
    joined, other = room_make("Joined one", created_by=alice), room_make("Other", created_by=alice)
    services.room_join(room=joined, user=bob)
    client = Client()
    client.force_login(bob)
    rooms = {r.slug: r.joined for r in client.get("/rooms/").context["rooms"]}
    assert rooms == {joined.slug: True, other.slug: False}


# -- A socket's count across the race between loading it and live frames ------------------


class Owner:
    """What a ``RoomWatch`` needs of its socket: who, and where frames go."""

    username = "bob"

    def __init__(self) -> None:
        self.user = type("U", (), {"pk": 2})()
        self.sent: list[dict] = []

    def sidebar_send(self, payload: dict) -> None:
        self.sent.append(payload)


def live(watch, seq: int, user: str = "alice") -> None:
    from realtime.events import frame_dumps

    watch.deliver_frame(frame_dumps({"type": "message", "user": user, "seq": seq}), seq)


def test_a_live_message_is_counted_once_whether_it_arrives_before_or_after_the_load():
    from rooms.sidebar import RoomWatch

    watch = RoomWatch(Owner(), 1, "general")
    live(watch, 11)  # arrived while the count loaded; the load (through 11) includes it
    live(watch, 12)  # stored after the load's statement
    watch.reset(5, 11)
    assert watch.unread == 6
    live(watch, 11)  # a late copy at or below the load's seq changes nothing
    live(watch, 13, user="bob")  # the user's own message: activity, not unread
    assert watch.unread == 6
    assert [f["unread"] for f in watch.owner.sent] == [1, 2, 6]
    # A read marker moved (count 0 as of seq 12): what came live after 12 still counts.
    live(watch, 14)
    watch.reset(0, 12)
    assert watch.unread == 1
