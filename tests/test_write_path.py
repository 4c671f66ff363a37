"""The PostgreSQL write path (rooms/store.py): one statement per message, same contract.

These run on a real PostgreSQL in autocommit, as a consumer's change does (no test
transaction around them: the one-statement path is taken only outside a transaction), so each
test makes rooms of its own.
"""

import threading
import time
from collections.abc import Iterator

import pytest
from django.db import OperationalError, connection
from django.db.utils import load_backend
from django.test.utils import CaptureQueriesContext

from realtime.db import _connections_check, writer_threads
from rooms import services, store
from rooms.models import Message, Room

from .factories import room_make, user_create
from .search_support import default_database
from .search_support import postgres_wrapper as _postgres_wrapper

postgres_wrapper = _postgres_wrapper


@pytest.fixture
def pg(postgres_wrapper, django_db_blocker) -> Iterator[None]:
    """PostgreSQL as the default database, in autocommit, for the test's duration."""
    with django_db_blocker.unblock(), default_database(postgres_wrapper):
        yield


def _seqs(room: Room) -> list[int]:
    return list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))


def test_public_room_message_is_one_statement_with_the_rooms_next_seq(pg):
    author, room = user_create(), room_make()
    with CaptureQueriesContext(connection) as queries:
        first, created = services.message_post(room=room, author=author, body="hello")
    assert created and len(queries) == 1
    second = services.message_create(room=room, author=author, body="again")
    stored = Message.objects.get(pk=second.pk)
    assert (first.seq, second.seq) == (1, 2)
    assert (stored.seq, stored.changed_seq, stored.body) == (2, 2, "again")
    assert Room.objects.get(pk=room.pk).last_seq == 2


def test_retried_client_id_answers_the_original_and_takes_no_seq(pg):
    author, room = user_create(), room_make()
    original, created = services.message_post(room=room, author=author, body="a", client_id="k1")
    retry, again = services.message_post(room=room, author=author, body="a", client_id="k1")
    assert created and not again and retry.pk == original.pk
    after = services.message_create(room=room, author=author, body="b")
    assert after.seq == original.seq + 1  # the failed statement took no seq: still gapless
    assert _seqs(room) == [1, 2]


def test_mentions_and_private_rooms_keep_the_transaction_path(pg):
    owner, outsider = user_create(), user_create()
    private = services.room_create(name="Quiet", created_by=owner, private=True)
    public = room_make()
    assert not store.one_trip_possible(private, "hi")
    assert not store.one_trip_possible(public, f"hi @{owner.username}")
    assert store.one_trip_possible(public, "hi")
    services.message_create(room=private, author=owner, body="inside")
    with pytest.raises(services.ChangeRefused):
        services.message_create(room=private, author=outsider, body="outside")
    assert _seqs(private) == [1]


def test_concurrent_writers_of_one_room_get_every_seq_once(pg, postgres_wrapper):
    author, room = user_create(), room_make()
    threads, per_thread, failures = 6, 20, []

    def write() -> None:
        # A connection of this thread's own, as each database thread of a worker has.
        wrapper = load_backend(postgres_wrapper.settings_dict["ENGINE"]).DatabaseWrapper(
            postgres_wrapper.settings_dict, "default"
        )
        try:
            with default_database(wrapper):
                for _ in range(per_thread):
                    services.message_create(room=room, author=author, body="x")
        except Exception as exc:  # reported below: an assertion in a thread would be lost
            failures.append(exc)
        finally:
            wrapper.close()

    workers = [threading.Thread(target=write) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    assert _seqs(room) == list(range(1, threads * per_thread + 1))
    assert Room.objects.get(pk=room.pk).last_seq == threads * per_thread


def test_a_change_thread_keeps_its_connection_and_gives_back_one_that_failed(pg, postgres_wrapper):
    """Between two changes a change thread keeps its connection (``realtime.db``), where a
    ``CONN_MAX_AGE`` of 0 would give it back every time; one whose server went away is given
    back, and the next change connects again."""
    author, room = user_create(), room_make()
    services.message_create(room=room, author=author, body="first")
    backend = connection.connection.info.backend_pid
    connection.close_at = time.monotonic() - 1  # what a CONN_MAX_AGE of 0 leaves
    _connections_check()
    services.message_create(room=room, author=author, body="second")
    assert connection.connection.info.backend_pid == backend

    killer = load_backend(postgres_wrapper.settings_dict["ENGINE"]).DatabaseWrapper(
        postgres_wrapper.settings_dict, "killer"
    )
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
    finally:
        killer.close()
    with pytest.raises(OperationalError):
        services.message_create(room=room, author=author, body="lost with its connection")
    _connections_check()
    assert connection.connection is None
    services.message_create(room=room, author=author, body="third")
    assert connection.connection.info.backend_pid != backend
    assert _seqs(room) == [1, 2, 3]


@pytest.mark.parametrize(
    ("pool", "threads"),
    [({"max_size": 16}, 8), ({"max_size": 4}, 3), (True, 3), ({"max_size": 1}, 1), (None, 8)],
)
def test_change_threads_leave_a_pooled_connection_for_the_rest_of_the_process(pool, threads):
    """Each change thread keeps a connection, so a process runs fewer of them than its pool
    holds (``CHAT_DB_WRITERS`` 8 here); without a pool, each thread has its own anyway."""
    options = {} if pool is None else {"pool": pool}
    assert writer_threads(8, {"OPTIONS": options}) == threads
