"""The connect's reads run as SQL compiled once (chatapp.prepared) and answer as the ORM does.

Every test runs twice (``search_db``): on the test SQLite database and on a real PostgreSQL.
"""

import contextlib
import re
from collections import Counter

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import OperationalError, connection, transaction
from django.db.models import Count, Max, Q
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from chatapp.prepared import Prepared, _plain, _plain_rows, reads_run
from notifications.models import Delivery
from notifications.selectors import _unread_snapshot, unread_snapshot, unread_snapshot_read
from notifications.services import notifications_mark_read, notify
from rooms import events, selectors, services
from rooms.catchup import catchup
from rooms.models import Message, Room

from .factories import room_make, user_create
from .search_support import postgres_wrapper as _postgres_wrapper
from .search_support import search_db as _search_db

pytestmark = pytest.mark.django_db
postgres_wrapper, search_db = _postgres_wrapper, _search_db


@pytest.fixture
def world(search_db):
    """Alice owns a private room and is in a public one with Bob; Carol is in neither."""
    alice, bob, carol = user_create(), user_create(), user_create()
    public = room_make(created_by=alice)
    services.room_join(room=public, user=bob)
    secret = services.room_create(name="secret", created_by=alice, private=True)
    for n in range(3):
        services.message_create(room=public, author=bob, body=f"from bob {n}")
    services.message_create(room=secret, author=alice, body="only alice")
    services.message_create(room=public, author=alice, body="from alice")
    direct = services.direct_open(users=[alice, carol])
    services.message_create(room=direct, author=carol, body="hi alice")
    return {"alice": alice, "bob": bob, "carol": carol, "rooms": [public, secret, direct]}


def orm_readable(user, slug):
    return selectors.rooms_readable(user=user).filter(slug=slug).first()


def orm_conversations(user):
    return list(selectors._member_rooms(user).values_list("pk", "slug", "unread", "last_seq"))


def test_the_connect_reads_run_as_compiled_sql_on_both_databases(world):
    alice = world["alice"]
    assert selectors._readable_by_slug.reusable(user=alice, slug="general")
    assert selectors._conversations_unread.reusable(user=alice)
    assert _unread_snapshot.reusable(user_id=alice.pk)
    # Instances are made from the rows directly (not through a RawQuerySet per call).
    for compiled in selectors._readable_by_slug._compiled.values():
        assert compiled is not None and compiled.fields is not None


def test_a_room_by_slug_follows_the_access_rule_as_the_orm_does(world):
    slugs = [room.slug for room in world["rooms"]] + ["no-such-room"]
    for name in ("alice", "bob", "carol"):
        user = world[name]
        for slug in slugs:
            expected = orm_readable(user, slug)
            got = selectors.room_readable_get(user=user, slug=slug)
            assert got == expected, (name, slug)
            if got is not None:
                # A whole instance, fields converted as the ORM converts them.
                assert (got.kind, got.name, got.created, got.last_seq) == (
                    expected.kind,
                    expected.name,
                    expected.created,
                    expected.last_seq,
                )
    secret = world["rooms"][1]
    assert selectors.room_readable_get(user=world["bob"], slug=secret.slug) is None
    assert selectors.room_readable_get(user=AnonymousUser(), slug=world["rooms"][0].slug) is None


def test_the_rooms_of_connects_queued_together_are_read_together_by_the_access_rule(world):
    """``rooms_readable_on_connect``: each answer as ``room_readable_get`` gives it, the rooms
    not kept read in one round trip on PostgreSQL, and the public ones kept from then on."""
    public, secret, direct = world["rooms"]
    users = [world["alice"], world["bob"], world["carol"], AnonymousUser()]
    asks = [
        (user, slug)
        for user in users
        for slug in (public.slug, secret.slug, direct.slug, "no-such-room")
    ]
    expected = [selectors.room_readable_get(user=user, slug=slug) for user, slug in asks]
    assert sum(room is not None for room in expected) == 3 + 1 + 2  # alice, bob, carol
    selectors.rooms_forget()
    with round_trips() as trips:
        found = selectors.rooms_readable_on_connect(asks)
    assert found == expected
    assert [(r.kind, r.name, r.created, r.last_seq) for r in found if r is not None] == [
        (r.kind, r.name, r.created, r.last_seq) for r in expected if r is not None
    ]
    assert len(trips) == (1 if connection.vendor == "postgresql" else 0)
    assert set(selectors._public_rooms) == {public.slug}
    with CaptureQueriesContext(connection) as queries:
        assert selectors.rooms_readable_on_connect([(users[1], public.slug)]) == [public]
    assert len(queries) == 0  # kept


def test_the_sidebar_counts_are_the_orms_for_every_user(world):
    for name in ("alice", "bob", "carol"):
        user = world[name]
        assert selectors.conversations_unread(user=user) == orm_conversations(user), name
    # Alice: Bob's 3 messages in the public room and Carol's 1 in the direct one are unread.
    counts = {slug: n for _, slug, n, _ in selectors.conversations_unread(user=world["alice"])}
    public, secret, direct = world["rooms"]
    assert counts == {public.slug: 3, secret.slug: 0, direct.slug: 1}
    assert {slug for _, slug, _, _ in selectors.conversations_unread(user=world["bob"])} == {
        public.slug
    }


def test_the_unread_notifications_are_the_orms(world):
    alice, bob = world["alice"], world["bob"]
    assert unread_snapshot(user_id=alice.pk) == (0, 0)  # none yet: the empty case
    notify(text="one", users=[alice, bob])
    notify(text="two", users=[alice])
    notifications_mark_read(user=bob)
    for user in (alice, bob, world["carol"]):
        state = Delivery.objects.filter(user=user).aggregate(
            unread=Count("pk", filter=Q(read_at__isnull=True)), through=Max("notification_id")
        )
        assert unread_snapshot(user_id=user.pk) == (state["unread"], state["through"] or 0)
    assert unread_snapshot(user_id=alice.pk)[0] == 2
    assert unread_snapshot(user_id=bob.pk)[0] == 0


@contextlib.contextmanager
def round_trips():
    """The psycopg pipelines entered meanwhile: on PostgreSQL, statements sent together and
    answered in one round trip (SQLite has none)."""
    import psycopg

    entered = []
    original = psycopg.Connection.pipeline

    def counted(self):
        entered.append(self)
        return original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psycopg.Connection, "pipeline", counted)
        yield entered


def prepared_statements() -> dict[str, int]:
    """The statements this PostgreSQL session holds prepared, and how often each ran."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        return dict(cursor.fetchall())


def test_a_connects_reads_run_together_answer_as_each_alone_in_one_round_trip(world):
    """A room socket's connect reads its room, notification count and sidebar together: on
    PostgreSQL in one pipeline (one round trip), each a statement prepared once per connection
    and then only run; one statement after another on SQLite."""
    alice, bob = world["alice"], world["bob"]
    public, secret, _ = world["rooms"]
    notify(text="one", users=[alice])
    gone = room_make(created_by=bob)
    gone_slug = gone.slug
    Room.objects.filter(pk=gone.pk).delete()
    postgresql = connection.vendor == "postgresql"
    for user, room in ((alice, public), (alice, secret), (bob, public), (bob, gone)):
        reads = (
            selectors.room_present_read(room=room),
            unread_snapshot_read(user_id=user.pk),
            selectors.conversations_unread_read(user=user),
        )
        alone = [read.run() for read in reads]
        with CaptureQueriesContext(connection) as queries, round_trips() as trips:
            together = reads_run(*reads)
        assert together == alone, (user, room)
        assert len(queries) == 3
        assert len(trips) == (1 if postgresql else 0)
    assert alone[0] is None and gone_slug  # the deleted room: no version
    (version,) = reads_run(selectors.room_present_read(room=public))  # one read: alone
    assert version[0] == Room.objects.get(pk=public.pk).last_seq == 4
    if not postgresql:
        return
    # Prepared: parsed and planned once, run eight times (alone and together, four users).
    sidebar = next(sql for sql in prepared_statements() if "rooms_membership" in sql)
    assert prepared_statements()[sidebar] == 8
    # Turned off (DB_PREPARED=0: psycopg's prepare_threshold None): the same answers, still in
    # one round trip, and nothing more prepared or run prepared.
    raw = connection.connection
    saved, raw.prepare_threshold = raw.prepare_threshold, None
    try:
        before = prepared_statements()
        with round_trips() as trips:
            assert reads_run(*reads) == alone
        assert len(trips) == 1 and prepared_statements() == before
    finally:
        raw.prepare_threshold = saved


def test_on_sqlite_the_reads_skip_djangos_cursor_but_keep_its_checks(world, monkeypatch):
    """On SQLite a connect's reads run on one plain cursor: Django's cursor wrapper cost ~20 µs
    a statement against SQLite's 2-8 µs (bench S5). What Django's cursor guarantees stays:
    the same answers, Django's errors, a broken transaction refused, and anything that watches
    statements (the query log, an ``execute_wrapper``) still sees every one of them."""
    alice, public = world["alice"], world["rooms"][0]

    def reads():
        return (
            selectors.room_present_read(room=public),
            unread_snapshot_read(user_id=alice.pk),
            selectors.conversations_unread_read(user=alice),
        )

    with CaptureQueriesContext(connection) as queries:  # through Django's cursor: logged
        logged = reads_run(*reads())
    assert len(queries) == 3
    assert logged[2] == orm_conversations(alice)
    if connection.vendor != "sqlite":
        assert not _plain(connection)
        return
    assert _plain(connection)
    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", None)  # Django's cursor is not made at all
        assert reads_run(*reads()) == logged
        assert selectors.room_version(room_id=public.pk)[0] == logged[0][0]
    seen = []

    def watch(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        assert reads_run(*reads()) == logged
    assert len(seen) == 3 and "rooms_membership" in seen[2]
    with pytest.raises(OperationalError, match="no such table"):
        _plain_rows(connection, [("SELECT 1 FROM no_such_table WHERE 1 = %s", [1])])
    with transaction.atomic():
        transaction.set_rollback(True)
        with pytest.raises(TransactionManagementError):
            reads_run(*reads())


def test_unwatched_reads_of_many_connects_run_each_statement_once_for_all_its_values(world):
    """With nothing watching statements (no query log, no ``execute_wrapper``), the reads of a
    batch of connects answer as each alone, each read's rows in its own order; on PostgreSQL
    in one round trip, each distinct statement run once for all its values (over arrays of
    them, ``LATERAL``), prepared: a cursor and Django's wrapper per read were a fifth of a
    worker's CPU in a reconnect storm, and a statement per read most of the rest of the reads'
    (bench S5). Django's checks stay: a broken transaction is refused."""
    public, _, direct = world["rooms"]
    users = [world["alice"], world["bob"], world["carol"]]
    reads = [
        read
        for user in users
        for room in (public, direct)
        for read in (
            selectors.room_present_read(room=room),
            unread_snapshot_read(user_id=user.pk),
            selectors.conversations_unread_read(user=user),
        )
    ]
    # Alice's sidebar has several rooms, in the order of their last activity.
    services.message_create(room=public, author=world["carol"], body="now public is last")
    alone = [read.run() for read in reads]
    assert len(alone[2]) == 3 and alone[2] != sorted(alone[2])
    postgresql = connection.vendor == "postgresql"
    before = prepared_statements() if postgresql else {}
    assert not connection.queries_logged and not connection.execute_wrappers
    with pytest.MonkeyPatch.context() as patch, round_trips() as trips:
        patch.setattr(connection, "_prepare_cursor", None)  # no Django cursor, on either
        assert reads_run(*reads) == alone
    seqs = [Room.objects.get(pk=room.pk).last_seq for room in (public, direct)]
    assert [answer[0] for answer in alone[::3]] == seqs * 3 == [5, 1] * 3
    assert len(trips) == (1 if postgresql else 0)
    if postgresql:
        ran = {sql: n - before.get(sql, 0) for sql, n in prepared_statements().items()}
        sidebars = [sql for sql, n in ran.items() if n and "rooms_membership" in sql]
        assert len(sidebars) == 1 and "LATERAL" in sidebars[0]
        assert ran[sidebars[0]] == 1  # six connects, one statement run once
    with transaction.atomic():
        transaction.set_rollback(True)
        with pytest.raises(TransactionManagementError):
            reads_run(*reads)


def _by_table(queries) -> Counter:
    """The captured queries counted by the first table each names after FROM."""
    return Counter(
        re.search(r'FROM "?(\w+)', q["sql"]).group(1) if "FROM" in q["sql"] else q["sql"][:20]
        for q in queries.captured_queries
    )


def test_connects_queued_together_read_in_one_round_trip_and_answer_as_each_alone(
    world, monkeypatch
):
    """The room sockets' connects queued together on the database thread (``_opened_many``)
    read their rooms, counts and sidebars in one pipeline on PostgreSQL, and each gets
    what it would alone: its state, or its close code; an error fails its own connect only."""
    from django.test import Client

    from realtime.db import Failed
    from rooms import consumers

    alice, bob, carol = world["alice"], world["bob"], world["carol"]
    public, secret, direct = world["rooms"]
    notify(text="one", users=[alice])
    gone = room_make(created_by=bob)
    Room.objects.filter(pk=gone.pk).delete()
    client = Client()
    client.force_login(bob)
    live_key = client.cookies["sessionid"].value
    connects = [
        consumers._Connect(alice, public, None, None, False),
        consumers._Connect(alice, secret, None, None, False),
        consumers._Connect(bob, public, live_key, None, True),  # checked: the session is live
        consumers._Connect(carol, secret, None, None, False),  # not a member: 4404
        consumers._Connect(bob, gone, None, None, False),  # deleted meanwhile: 1013
        consumers._Connect(bob, public, "no-such-session-key-0123456789ab", None, True),  # 4401
        consumers._Connect(carol, direct, None, None, False),
    ]
    with CaptureQueriesContext(connection) as queries, round_trips() as trips:
        alone = [consumers._opened_many([c])[0] for c in connects]
    queries_alone, trips_alone = _by_table(queries), len(trips)
    assert queries_alone.pop("django_session") == 2  # the two checked sessions, one each
    assert alone[3:6] == [4404, 1013, 4401]
    assert alone[0].unread == unread_snapshot(user_id=alice.pk) and alone[0].unread[0] == 1
    assert alone[0].sidebar == selectors.conversations_unread(user=alice)
    assert alone[2].history is None
    with CaptureQueriesContext(connection) as queries, round_trips() as trips:
        together = consumers._opened_many(connects)
    assert together == alone
    # The checked sessions are read in one query together (chatapp.sessions.datas_many).
    # Six connects read (the 4401 one does not), the same statements either way: on
    # PostgreSQL in a round trip each alone, in one for all together; on SQLite one by one.
    queries_together = _by_table(queries)
    assert queries_together.pop("django_session") == 1
    assert queries_together == queries_alone
    assert (trips_alone, len(trips)) == ((6, 1) if connection.vendor == "postgresql" else (0, 0))
    # ?after= brings the catch-up, as rooms.catchup reads it alone.
    catching_up = consumers._Connect(alice, public, None, 1, False)
    (opened,) = consumers._opened_many([catching_up])
    assert opened.history == catchup(public.pk, 1, settings.CHAT_SYNC_LIMIT)
    assert len(opened.history.frames) == 3 and opened.history.last == 4

    def failing(room_id, *args):
        if room_id == secret.pk:
            raise RuntimeError("the catch-up failed")
        return catchup(room_id, *args)

    monkeypatch.setattr(consumers, "catchup", failing)
    answers = consumers._opened_many(
        [catching_up, consumers._Connect(alice, secret, None, 0, False)]
    )
    assert answers[0] == opened
    assert isinstance(answers[1], Failed) and str(answers[1].exc) == "the catch-up failed"


def test_a_read_whose_value_is_inlined_in_its_sql_is_built_every_time(search_db):
    # LIMIT takes its value into the SQL text: the marker would be baked in, so no reuse.
    read = Prepared(lambda n: Room.objects.order_by("pk").values_list("pk")[:n])
    rooms = [room_make() for _ in range(3)]
    assert not read.reusable(n=2)
    assert read.rows(n=2) == [(rooms[0].pk,), (rooms[1].pk,)]
    assert connection.vendor == search_db


def test_the_session_engine_loads_live_sessions_only_as_djangos_does(search_db):
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from chatapp.sessions import _by_key
    from chatapp.sessions.db import SessionStore

    store = SessionStore()
    store["who"] = "alice"
    store.save()
    key = store.session_key
    assert _by_key.reusable(session_key=key)
    assert SessionStore(key).load() == {"who": "alice"}
    assert SessionStore("no-such-session-key-0123456789ab").load() == {}
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(1))
    expired = SessionStore(key)
    assert expired.load() == {}
    assert expired.session_key is None  # as Django's: an expired key is dropped


def test_a_sockets_user_is_the_one_djangos_get_user_gives(search_db, client):
    from django.contrib.auth import get_user
    from django.test import RequestFactory

    from realtime.sessions import _user_by_pk, session_user

    alice = user_create()
    client.force_login(alice)
    key = client.cookies["sessionid"].value
    assert _user_by_pk.reusable(pk=alice.pk)
    assert session_user(key) == alice
    request = RequestFactory().get("/")
    request.session = client.session
    assert get_user(request) == alice  # Django agrees
    alice.is_active = False
    alice.save()
    assert session_user(key) is None  # ModelBackend refuses inactive users
    alice.is_active = True
    alice.set_password("a new password")
    alice.save()
    assert session_user(key) is None  # the session's hash is the old password's
    assert session_user(None) is None
    assert session_user("no-such-session-key-0123456789ab") is None


def test_the_handshakes_of_a_moment_load_their_users_in_one_query_by_the_same_rule(search_db):
    """``sessions_users`` (the handshakes queued together, realtime.auth) answers each key as
    ``session_user`` does, and loads the users of Django's ModelBackend in one query."""
    from django.contrib.sessions.models import Session
    from django.test import Client
    from django.utils import timezone

    from realtime.sessions import session_user, sessions_users

    def logged_in(user):
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    alice, bob, carol, dave, erin = (user_create() for _ in range(5))
    keys = {user.pk: logged_in(user) for user in (alice, bob, carol, dave, erin)}
    second_alice = logged_in(alice)
    carol.is_active = False  # inactive: ModelBackend refuses
    carol.save()
    dave.set_password("changed")  # the session's hash is the old password's
    dave.save()
    erin_key = keys[erin.pk]
    asked = [keys[alice.pk], None, keys[bob.pk], keys[carol.pk], keys[dave.pk], erin_key]
    asked += [second_alice]
    erin.delete()
    asked += ["no-such-session-key-0123456789ab", "short"]
    expired, corrupted = logged_in(bob), logged_in(bob)
    Session.objects.filter(session_key=expired).update(expire_date=timezone.now())
    Session.objects.filter(session_key=corrupted).update(session_data="not signed")
    asked += [expired, corrupted]
    expected = [alice, None, bob, None, None, None, alice, None, None, None, None]
    assert [session_user(key) for key in asked] == expected
    with CaptureQueriesContext(connection) as queries:
        assert sessions_users(asked) == expected
    # The sessions in one query, the users of Django's ModelBackend in one more.
    assert _by_table(queries) == {"django_session": 1, "auth_user": 1}


def test_the_users_of_a_batch_are_read_compiled_once_per_padded_length(search_db):
    """The handshakes' users (``session_data_users``) come from SQL compiled once for each
    power-of-two length, a batch padded with its last pk: each batch gets exactly its users,
    in one query up to ``USERS_READ_MAX`` of them."""
    from realtime.sessions import USERS_READ_MAX, _users_by_pks, _users_by_pks_read

    users = [user_create() for _ in range(USERS_READ_MAX + 3)]
    pks = [user.pk for user in users]
    missing = max(pks) + 1000
    for size in (2, 3, 5, 8, 9, 77, USERS_READ_MAX):
        with CaptureQueriesContext(connection) as queries:
            found = _users_by_pks([*pks[: size - 1], missing])
        assert found == {user.pk: user for user in users[: size - 1]}
        assert len(queries) == 1
    with CaptureQueriesContext(connection) as queries:
        assert _users_by_pks(pks) == {user.pk: user for user in users}
    assert len(queries) == 2
    lengths = {len(names) for (_, _, names) in _users_by_pks_read._compiled}
    assert lengths <= {2**k for k in range(USERS_READ_MAX.bit_length())}
    assert all(compiled is not None for compiled in _users_by_pks_read._compiled.values())


def test_the_session_rechecks_of_a_moment_answer_as_each_alone_with_one_user_query(search_db):
    """``sessions_valid`` (sockets re-checking together: on connect after a check passed them
    by, on a session-check event, at the expiry second) answers each (key, user) as
    ``session_valid`` does, loading the users in one query."""
    from django.test import Client

    from realtime.sessions import session_valid, sessions_valid

    def logged_in(user):
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    alice, bob, carol = (user_create() for _ in range(3))
    keys = {user.pk: logged_in(user) for user in (alice, bob, carol)}
    carol.set_password("changed")  # her session's hash is the old password's
    carol.save()
    asks = [(keys[alice.pk], alice.pk), (keys[bob.pk], bob.pk), (keys[bob.pk], alice.pk)]
    asks += [(keys[carol.pk], carol.pk), (None, alice.pk), ("no-such-session-key-0123456789ab", 1)]
    expected = [True, True, False, False, False, False]
    assert [session_valid(key, user_id) for key, user_id in asks] == expected
    with CaptureQueriesContext(connection) as queries:
        assert sessions_valid(asks) == expected
    assert len([q for q in queries.captured_queries if "auth_user" in q["sql"]]) == 1


def test_who_of_those_online_are_members_is_read_with_one_parameter_per_list(world):
    # Presence asks it every second a room's online set changes, for every user online.
    public, secret, direct = world["rooms"]
    alice, bob, carol = world["alice"], world["bob"], world["carol"]
    online = [alice.pk, bob.pk, carol.pk, 10**9]  # and one who is no member of anything
    rooms = [public.pk, secret.pk, direct.pk]
    expected = {
        public.pk: {alice.pk, bob.pk},
        secret.pk: {alice.pk},
        direct.pk: {alice.pk, carol.pk},
    }
    assert selectors.room_members_among(room_ids=rooms, user_ids=online) == expected
    # In chunks of users, as with more users online than one statement may bind.
    assert selectors.room_members_among(room_ids=rooms, user_ids=online, chunk=2) == expected
    assert selectors.room_members_among(room_ids=rooms, user_ids=[]) == {r: set() for r in rooms}


def test_who_of_those_online_are_members_reads_each_room_once_not_every_pair(db):
    """SQLite without statistics (Django never runs ANALYZE) probed the (room, user) index for
    every pair of the two lists: 500 rooms and 5,000 users online, 2.5 million probes, ~200 ms of
    every presence tick in a reconnect storm (bench S5). The rooms' members are read instead,
    each kept if online."""
    rooms = [room_make() for _ in range(3)]
    with CaptureQueriesContext(connection) as queries:
        selectors.room_members_among(room_ids=[r.pk for r in rooms], user_ids=[1, 2, 3])
    (query,) = queries.captured_queries
    sql = query["sql"]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        plan = " / ".join(row[-1] for row in cursor.fetchall())
    assert "rooms_membership" in plan
    assert "user_id=?" not in plan, plan  # the index is searched by room only


def test_a_catch_up_reads_every_changed_message_in_its_current_state_as_the_orm_does(world):
    alice, bob, carol = world["alice"], world["bob"], world["carol"]
    public = world["rooms"][0]
    services.room_join(room=public, user=carol)
    after = Room.objects.get(pk=public.pk).last_seq

    def post(author, body, **extra):
        return services.message_post(room=public, author=author, body=body, **extra)[0]

    first = post(alice, "**first**, soon edited")
    doomed = post(bob, "to be deleted")
    post(carol, "a reply to the first", reply_to=first, client_id="carol-1")
    post(alice, "a reply to the deleted one", reply_to=doomed)
    services.message_edit(message=first, user=alice, body="_edited_ first")
    services.reaction_set(message=first, user=carol, emoji="👍", on=True)
    services.reaction_set(message=first, user=bob, emoji="🎉", on=True)
    services.reaction_set(message=first, user=alice, emoji="👍", on=True)
    services.message_delete(message=doomed, user=bob)
    room_seq = Room.objects.get(pk=public.pk).last_seq

    def frames(messages):
        return [
            frame
            for message in messages
            for frame in events.catchup_frames(message, selectors.reactions_state(message))
        ]

    orm = selectors._with_state(
        Message.objects.filter(room_id=public.pk, changed_seq__gt=after)
    ).order_by("changed_seq")
    messages, last, more = selectors.changes_after(room_id=public.pk, after=after, limit=50)
    assert frames(messages) == frames(orm) and (last, more) == (room_seq, False)
    assert [f["type"] for f in frames(messages)] == ["message"] * 3 + ["message.deleted"]
    reacted = next(f for f in frames(messages) if f.get("id") == first.pk)
    assert reacted["reactions"] == {"👍": [carol.username, alice.username], "🎉": [bob.username]}
    # Read as compiled SQL, both statements in one round trip on PostgreSQL.
    assert selectors._changes.reusable(room_id=public.pk, after=after, upto=room_seq)
    assert selectors._changes_reactions.reusable(room_id=public.pk, after=after)
    # Past the limit the queryset reads them, cut by the limit, as before.
    cut, last, more = selectors.changes_after(room_id=public.pk, after=after, limit=2)
    assert frames(cut) == frames(orm[:2]) and more and last == orm[1].changed_seq
