"""A room's catch-up is read once per process for every socket that asks for the same one
(rooms.catchup), and is never stale: any change to the room, which takes a seq, makes the next
ask read it again."""

import orjson
import pytest

from rooms import catchup as catchups
from rooms import selectors, services
from rooms.catchup import catchup

from .factories import messages_make, room_make, user_create

pytestmark = pytest.mark.django_db


def bodies(result) -> list:
    return [(frame["type"], frame.get("body")) for frame in map(orjson.loads, result.frames)]


def test_sockets_asking_for_the_same_catch_up_share_one_read(django_assert_num_queries):
    author = user_create()
    room = room_make()
    messages_make(room, author, 3)
    first = catchup(room.pk, 1, 100)
    with django_assert_num_queries(1):  # the room's seq only
        again = catchup(room.pk, 1, 100)
    assert again is first
    assert [frame[0] for frame in bodies(first)] == ["message", "message"]
    assert (first.last, first.more) == (3, False)


def test_every_kind_of_change_is_in_the_next_catch_up():
    author = user_create()
    room = room_make()
    message = messages_make(room, author, 2)[0]
    assert bodies(catchup(room.pk, 0, 100))[0] == ("message", message.body)
    services.message_edit(message=message, user=author, body="edited")
    edited = catchup(room.pk, 0, 100)
    assert bodies(edited)[-1] == ("message", "edited") and edited.last == 3
    services.reaction_set(message=message, user=author, emoji="👍", on=True)
    reacted = catchup(room.pk, 0, 100)
    assert orjson.loads(reacted.frames[-1])["reactions"] == {"👍": [author.get_username()]}
    services.message_delete(message=message, user=author)
    deleted = catchup(room.pk, 0, 100)
    assert bodies(deleted)[-1] == ("message.deleted", None) and deleted.last == 5


def test_a_catch_up_is_cut_by_its_limit_and_kept_per_limit():
    author = user_create()
    room = room_make()
    messages_make(room, author, 5)
    page = catchup(room.pk, 0, 2)
    assert (len(page.frames), page.last, page.more) == (2, 2, True)
    assert len(catchup(room.pk, 0, 10).frames) == 5


def test_a_connect_reads_the_room_once_for_its_presence_and_its_catch_up(
    django_assert_num_queries,
):
    room = room_make()
    messages_make(room, user_create(), 3)
    first = catchup(room.pk, 1, 100)
    with django_assert_num_queries(1):  # the room by id and slug: still there, and its seq
        version = selectors.room_present(room=room)
        again = catchup(room.pk, 1, 100, version)
    assert version == selectors.room_version(room_id=room.pk) and version[0] == 3
    assert again is first


def test_nothing_after_the_rooms_seq_costs_no_entry():
    room = room_make()
    messages_make(room, user_create(), 2)
    assert catchup(room.pk, 2, 100) == ((), 2, False)
    assert catchup(room.pk, 7, 100) == ((), 2, False)
    assert not catchups._entries


def test_kept_catch_ups_expire_and_stay_within_their_byte_budget(monkeypatch):
    author = user_create()
    room = room_make()
    messages_make(room, author, 3)
    monkeypatch.setattr(catchups, "CATCHUP_TTL", -1.0)  # expired as soon as kept
    first = catchup(room.pk, 0, 100)
    again = catchup(room.pk, 0, 100)
    assert again is not first and again == first  # read again, the same content
    monkeypatch.setattr(catchups, "CATCHUP_BYTES", 8 * sum(map(len, first.frames)))
    for after in range(3):
        catchup(room.pk, after, 100)
    assert catchups._size <= catchups.CATCHUP_BYTES
    assert sum(entry.size for entry in catchups._entries.values()) == catchups._size
