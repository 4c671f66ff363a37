"""Room and message services: slugs, seqs, and broadcasts only after commit."""

import threading

import pytest
from django.db import connection, transaction

from rooms import services
from rooms.models import Message, Room

from .factories import messages_make, room_make, user_create

pytestmark = pytest.mark.django_db


def test_room_slug_is_derived_from_the_name_and_made_unique():
    first = room_make("Café Talk")
    Room.objects.create(name="other", slug="general")
    second = room_make("General!")
    assert first.slug == "café-talk"
    assert second.slug == "general-2"


def test_room_names_are_unique_ignoring_case():
    room_make("Ops")
    with pytest.raises(services.RoomNameTaken):
        room_make("ops")


def test_seq_counts_each_rooms_messages_from_one_without_gaps(alice):
    one, two = room_make(), room_make()
    messages_make(one, alice, 3)
    messages_make(two, alice, 2)
    messages_make(one, alice, 1)
    assert list(one.messages.values_list("seq", flat=True)) == [1, 2, 3, 4]
    assert list(two.messages.values_list("seq", flat=True)) == [1, 2]
    one.refresh_from_db()
    assert one.last_seq == 4


def test_message_rolled_back_with_its_transaction_leaves_no_seq_used(alice):
    room = room_make()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.message_create(room=room, author=alice, body="never")
        raise RuntimeError
    message = services.message_create(room=room, author=alice, body="kept")
    assert message.seq == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_consecutive_seqs():
    author = user_create()
    room = room_make()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(n):
                services.message_create(room=room, author=author, body=f"m{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(10,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    seqs = sorted(Message.objects.filter(room=room).values_list("seq", flat=True))
    assert seqs == list(range(1, 41))


def test_broadcast_waits_for_commit(alice, django_capture_on_commit_callbacks):
    room = room_make()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.message_create(room=room, author=alice, body="hi")
    assert len(callbacks) == 1
