"""The change contract (docs/protocol.md): edits, deletions, reactions, replies and idempotent
sends, each numbered by the room's one ``seq`` and delivered exactly once, live or on catch-up."""

import random

import pytest
from channels.db import database_sync_to_async
from django.db import IntegrityError, transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rooms import events, selectors, services
from rooms.models import Message, Reaction, Room

from .conftest import joined, receive, receive_type
from .factories import room_make, user_create

socket_tests = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def post(socket, body: str, **extra) -> dict:
    await socket.send_json_to({"type": "message", "body": body, **extra})
    return await receive_type(socket, "message")


# -- The state a client holds, and how frames change it (the page's rules, in Python) ------


def apply(state: dict[int, dict], frame: dict) -> None:
    """Apply one server frame to a client's room state (id → message)."""
    kind = frame["type"]
    if kind == "message":
        state[frame["id"]] = {
            "seq": frame["seq"],
            "user": frame["user"],
            "body": frame["body"],
            "edited": frame["edited"] is not None,
            "reply_to": frame["reply_to"],
            "reactions": frame["reactions"],
        }
    elif kind == "message.edited" and frame["id"] in state:
        state[frame["id"]].update(body=frame["body"], edited=True)
    elif kind == "message.deleted":
        state.pop(frame["id"], None)
    elif kind == "reactions" and frame["id"] in state:
        state[frame["id"]]["reactions"] = frame["reactions"]


def stored_state(room: Room) -> dict[int, dict]:
    """The room's state as the database holds it."""
    state = {}
    for message in Message.objects.filter(room=room, deleted__isnull=True).select_related("author"):
        state[message.pk] = {
            "seq": message.seq,
            "user": message.author.get_username(),
            "body": message.body,
            "edited": message.edited is not None,
            "reply_to": message.reply_to_id,
            "reactions": selectors.reactions_state(message),
        }
    return state


def catch_up(state: dict[int, dict], room: Room, after: int, limit: int) -> int:
    """Apply the catch-up after ``after`` in pages of ``limit``, as a client does with sync."""
    while True:
        messages, last, more = selectors.changes_after(room_id=room.pk, after=after, limit=limit)
        for message in messages:
            for frame in events.catchup_frames(message, selectors.reactions_state(message)):
                apply(state, frame)
        assert last >= after
        after = last
        if not more:
            return after


# -- One seq for every change -----------------------------------------------------------


@pytest.mark.django_db
def test_every_change_takes_the_rooms_next_seq_and_a_message_keeps_its_own():
    alice, bob = user_create("alice"), user_create("bob")
    room = room_make("General", created_by=alice)
    first = services.message_create(room=room, author=alice, body="helo")
    edited = services.message_edit(message=first, user=alice, body="hello")
    services.reaction_set(message=first, user=bob, emoji="👍", on=True)
    second = services.message_create(room=room, author=bob, body="hi")
    services.message_delete(message=second, user=bob)
    room.refresh_from_db()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.seq, edited.changed_seq, first.changed_seq) == (1, 2, 3)
    assert (second.seq, second.changed_seq, room.last_seq) == (4, 5, 5)
    seqs = Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True)
    assert list(seqs) == [1, 4]


@pytest.mark.django_db
def test_a_change_that_changes_nothing_takes_no_seq():
    alice = user_create("alice")
    room = room_make("General", created_by=alice)
    message = services.message_create(room=room, author=alice, body="same")
    services.message_edit(message=message, user=alice, body="same")
    assert services.reaction_set(message=message, user=alice, emoji="🎉", on=False) is None
    services.reaction_set(message=message, user=alice, emoji="🎉", on=True)
    assert services.reaction_set(message=message, user=alice, emoji="🎉", on=True) is None
    room.refresh_from_db()
    assert room.last_seq == 2


@pytest.mark.django_db
def test_a_refused_change_takes_no_seq():
    alice, bob = user_create("alice"), user_create("bob")
    room = room_make("General", created_by=alice)
    message = services.message_create(room=room, author=alice, body="mine")
    with pytest.raises(services.ChangeRefused) as refused:
        services.message_edit(message=message, user=bob, body="yours now")
    assert refused.value.code == "forbidden"
    room.refresh_from_db()
    assert room.last_seq == 1


@pytest.mark.django_db
def test_deletion_erases_the_text_and_reactions_and_keeps_a_tombstone():
    alice = user_create("alice")
    room = room_make("General", created_by=alice)
    message = services.message_create(room=room, author=alice, body="secret plans")
    services.reaction_set(message=message, user=alice, emoji="😮", on=True)
    services.message_delete(message=message, user=alice)
    tombstone = Message.objects.get(pk=message.pk)
    assert tombstone.body == ""
    assert tombstone.deleted is not None
    assert not Reaction.objects.filter(message=tombstone).exists()
    assert not Message.objects.filter(body__contains="secret").exists()


@pytest.mark.django_db
def test_client_id_is_unique_per_author_in_the_database_itself():
    alice = user_create("alice")
    room = room_make("General", created_by=alice)
    message = services.message_create(room=room, author=alice, body="once", client_id="abc")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(room=room, author=alice, seq=99, body="twice", client_id="abc")
    again, created = services.message_post(room=room, author=alice, body="x", client_id="abc")
    assert (again.pk, created) == (message.pk, False)
    room.refresh_from_db()
    assert room.last_seq == 1
    # Without a client_id there is no constraint, and other authors have their own keys.
    services.message_create(room=room, author=alice, body="no key")
    services.message_create(room=room, author=alice, body="no key")
    bob = user_create("bob")
    assert services.message_post(room=room, author=bob, body="b", client_id="abc")[1]


# -- The frames, through the real router -------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_edit_is_sent_to_every_socket_with_its_own_seq(connect, alice, bob, room):
    path = f"/ws/rooms/{room.slug}/"
    a, b = await connect(path, alice), await connect(path, bob)
    message = await post(a, "helo")
    await receive_type(b, "message")
    await a.send_json_to({"type": "edit", "id": message["id"], "body": " hello "})
    for socket in (a, b):
        frame = await receive_type(socket, "message.edited")
        assert frame == {
            "type": "message.edited",
            "id": message["id"],
            "seq": 2,
            "body": "hello",
            "html": "<p>hello</p>",
            "edited": frame["edited"],
        }
        assert frame["edited"].endswith("Z")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_only_the_author_edits_and_edits_follow_the_body_rules(connect, alice, bob, room):
    path = f"/ws/rooms/{room.slug}/"
    a, b = await connect(path, alice), await connect(path, bob)
    message = await post(a, "mine")
    await receive_type(b, "message")
    cases = [
        (b, {"type": "edit", "id": message["id"], "body": "bob was here"}, "forbidden"),
        (a, {"type": "edit", "id": message["id"], "body": "   "}, "empty_body"),
        (a, {"type": "edit", "id": message["id"], "body": 5}, "invalid_body"),
        (a, {"type": "edit", "id": message["id"], "body": "x" * 4001}, "body_too_long"),
        (a, {"type": "edit", "id": 10**6, "body": "nope"}, "not_found"),
        (a, {"type": "edit", "id": "1", "body": "nope"}, "not_found"),
        (a, {"type": "edit", "id": 2**70, "body": "nope"}, "not_found"),
    ]
    for socket, frame, code in cases:
        await socket.send_json_to(frame)
        answer = await receive(socket)
        assert (answer["type"], answer["code"]) == ("error", code), frame
    stored = await Message.objects.aget(pk=message["id"])
    assert (stored.body, stored.edited, stored.changed_seq) == ("mine", None, 1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_message_of_another_room_is_not_found(connect, alice, room):
    other = await database_sync_to_async(room_make)("Elsewhere", created_by=alice)
    there = await connect(f"/ws/rooms/{other.slug}/", alice)
    elsewhere = await post(there, "over there")
    here = await connect(f"/ws/rooms/{room.slug}/", alice)
    for frame in (
        {"type": "edit", "id": elsewhere["id"], "body": "moved"},
        {"type": "delete", "id": elsewhere["id"]},
        {"type": "react", "id": elsewhere["id"], "emoji": "👍", "on": True},
        {"type": "message", "body": "re", "reply_to": elsewhere["id"]},
    ):
        await here.send_json_to(frame)
        assert (await receive(here))["code"] == "not_found"
    assert await Message.objects.acount() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_deletion_by_author_owner_or_staff_and_nobody_else(connect, alice, bob, room):
    carol = await database_sync_to_async(user_create)("carol")
    staff = await database_sync_to_async(user_create)("staff")
    staff.is_staff = True
    await staff.asave()
    path = f"/ws/rooms/{room.slug}/"  # alice owns the room
    a, b, c, s = [await connect(path, u) for u in (alice, bob, carol, staff)]
    ids = []
    for body in ("one", "two", "three"):
        ids.append((await post(b, body))["id"])
    for socket in (a, c, s):
        for _ in ids:
            await receive_type(socket, "message")
    await c.send_json_to({"type": "delete", "id": ids[0]})
    assert (await receive(c))["code"] == "forbidden"
    for socket, message_id in ((b, ids[0]), (a, ids[1]), (s, ids[2])):
        await socket.send_json_to({"type": "delete", "id": message_id})
        frame = await receive_type(c, "message.deleted")
        assert frame == {"type": "message.deleted", "id": message_id, "seq": frame["seq"]}
    assert await Message.objects.filter(deleted__isnull=True).acount() == 0
    await b.send_json_to({"type": "delete", "id": ids[0]})
    while (frame := await receive(b))["type"] != "error":
        pass
    assert frame["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_reactions_carry_the_whole_state_and_toggle(connect, alice, bob, room):
    path = f"/ws/rooms/{room.slug}/"
    a, b = await connect(path, alice), await connect(path, bob)
    message = await post(a, "ship it")
    await receive_type(b, "message")
    expected = [
        (a, "👍", True, {"👍": ["alice"]}),
        (b, "👍", True, {"👍": ["alice", "bob"]}),
        (b, "❤️", True, {"👍": ["alice", "bob"], "❤️": ["bob"]}),
        (a, "👍", False, {"👍": ["bob"], "❤️": ["bob"]}),
    ]
    for seq, (socket, emoji, on, state) in enumerate(expected, start=2):
        await socket.send_json_to({"type": "react", "id": message["id"], "emoji": emoji, "on": on})
        for each in (a, b):
            frame = await receive_type(each, "reactions")
            assert frame == {
                "type": "reactions",
                "id": message["id"],
                "seq": seq,
                "reactions": state,
            }


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_reaction_is_exactly_one_emoji(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    message = await post(socket, "react to me")
    for emoji in ("a", "👍👍", "", 5, None, "<b>", "👍 "):
        await socket.send_json_to({"type": "react", "id": message["id"], "emoji": emoji})
        assert (await receive(socket))["code"] == "invalid_emoji", emoji
    await socket.send_json_to({"type": "react", "id": message["id"], "emoji": "👍", "on": "yes"})
    assert (await receive(socket))["code"] == "invalid_frame"
    for emoji in ("👍🏽", "👨‍👩‍👧", "❤️"):
        await socket.send_json_to({"type": "react", "id": message["id"], "emoji": emoji})
        assert emoji in (await receive_type(socket, "reactions"))["reactions"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_reply_names_its_parent_with_an_excerpt(connect, alice, bob, room):
    path = f"/ws/rooms/{room.slug}/"
    a, b = await connect(path, alice), await connect(path, bob)
    parent = await post(a, "Where  shall\nwe meet? " + "x" * 200)
    await receive_type(b, "message")
    reply = await post(b, "At noon", reply_to=parent["id"])
    assert reply["reply_to"] == parent["id"]
    assert reply["reply"]["id"] == parent["id"]
    assert reply["reply"]["seq"] == parent["seq"]
    assert reply["reply"]["user"] == "alice"
    assert reply["reply"]["excerpt"].startswith("Where shall we meet? xxx")
    assert len(reply["reply"]["excerpt"]) <= 100
    assert (await receive_type(a, "message"))["reply_to"] == parent["id"]
    plain = await post(a, "no reply")
    assert (plain["reply_to"], plain["reply"]) == (None, None)
    await b.send_json_to({"type": "delete", "id": reply["id"]})
    await receive_type(b, "message.deleted")
    for bad in (reply["id"], 10**9, "x", True):  # a deleted, an unknown, not an id at all
        await b.send_json_to({"type": "message", "body": "re", "reply_to": bad})
        while (frame := await receive(b))["type"] != "error":
            pass
        assert frame["code"] == "not_found", bad


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_same_client_id_twice_stores_and_sends_once(connect, alice, bob, room):
    path = f"/ws/rooms/{room.slug}/"
    first, second, other = (
        await connect(path, alice),
        await connect(path, alice),
        await connect(path, bob),
    )
    sent = await post(first, "only once", client_id="k-1_A")
    assert sent["client_id"] == "k-1_A"
    assert (await receive_type(second, "message"))["id"] == sent["id"]
    assert (await receive_type(other, "message"))["id"] == sent["id"]
    # A retry on another socket, even with another body: the original comes back to it alone.
    again = await post(second, "only once (retry)", client_id="k-1_A")
    assert (again["id"], again["seq"], again["body"]) == (sent["id"], sent["seq"], "only once")
    assert await first.receive_nothing(timeout=0.3)
    assert await other.receive_nothing(timeout=0.1)
    assert await Message.objects.acount() == 1
    # And after a reconnect.
    await first.disconnect()
    back = await connect(path + f"?after={sent['seq']}", alice)
    assert (await receive_type(back, "synced"))["last_seq"] == sent["seq"]
    assert (await post(back, "only once", client_id="k-1_A"))["id"] == sent["id"]
    assert await Message.objects.acount() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_retry_of_a_deleted_message_returns_it_and_its_deletion(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    sent = await post(socket, "gone soon", client_id="gone")
    await socket.send_json_to({"type": "delete", "id": sent["id"]})
    await receive_type(socket, "message.deleted")
    await socket.send_json_to({"type": "message", "body": "gone soon", "client_id": "gone"})
    assert (await receive_type(socket, "message"))["id"] == sent["id"]
    assert (await receive_type(socket, "message.deleted"))["id"] == sent["id"]
    assert await Message.objects.acount() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_invalid_client_ids_are_refused(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    for client_id in ("", "x" * 65, "has space", "ü", 5, ["a"]):
        await socket.send_json_to({"type": "message", "body": "hi", "client_id": client_id})
        assert (await receive(socket))["code"] == "invalid_client_id", client_id
    assert await Message.objects.acount() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@override_settings(CHAT_RATE_PER_SECOND=1, CHAT_RATE_BURST=2)
async def test_changes_share_the_message_rate_limit(connect, alice, room):
    socket = await connect(f"/ws/rooms/{room.slug}/", alice)
    message = await post(socket, "one")
    await socket.send_json_to({"type": "edit", "id": message["id"], "body": "two"})
    await receive_type(socket, "message.edited")
    await socket.send_json_to({"type": "react", "id": message["id"], "emoji": "👍"})
    assert (await receive(socket))["code"] == "rate_limited"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_catch_up_reports_edits_deletions_and_reactions_since_a_seq(
    connect, alice, bob, room
):
    path = f"/ws/rooms/{room.slug}/"
    a = await connect(path, alice)
    kept, gone, edited = [await post(a, body) for body in ("kept", "gone", "typo")]
    await a.disconnect()
    b = await connect(path, bob)
    await joined(b)
    await b.send_json_to({"type": "edit", "id": edited["id"], "body": "x"})  # not bob's
    assert (await receive(b))["code"] == "forbidden"
    me = await database_sync_to_async(Message.objects.get)(pk=edited["id"])
    await database_sync_to_async(services.message_edit)(message=me, user=alice, body="fixed")
    gone_message = await database_sync_to_async(Message.objects.get)(pk=gone["id"])
    await database_sync_to_async(services.message_delete)(message=gone_message, user=alice)
    await b.send_json_to({"type": "react", "id": kept["id"], "emoji": "🎉", "on": True})
    new = await post(b, "new one")
    back = await connect(path + "?after=3", alice)
    frames = []
    while (frame := await receive(back))["type"] != "synced":
        frames.append(frame)
    # Each changed message once, in the order of its latest change, as it is now.
    assert [(f["type"], f["id"]) for f in frames] == [
        ("message", edited["id"]),
        ("message.deleted", gone["id"]),
        ("message", kept["id"]),
        ("message", new["id"]),
    ]
    assert (frames[0]["body"], frames[0]["seq"]) == ("fixed", 3)
    assert frames[0]["edited"] is not None
    assert (frames[2]["reactions"], frames[2]["seq"]) == ({"🎉": ["bob"]}, 1)
    assert frame == {"type": "synced", "last_seq": 7, "more": False}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_live_frames_applied_in_order_give_the_stored_state(connect, alice, bob, room):
    path = f"/ws/rooms/{room.slug}/"
    watcher, a, b = await connect(path, bob), await connect(path, alice), await connect(path, bob)
    await joined(watcher)
    rng = random.Random(7)
    ids: list[int] = []
    for _ in range(40):
        socket, user = rng.choice(((a, "alice"), (b, "bob")))
        own = [i for i, author in ids if author == user] if ids else []
        choice = rng.random()
        if choice < 0.4 or not ids:
            frame = await post(socket, f"m{rng.random():.5f}")
            ids.append((frame["id"], user))
            continue
        if choice < 0.6 and own:
            await socket.send_json_to({"type": "edit", "id": rng.choice(own), "body": "e"})
        elif choice < 0.7 and own:
            target = rng.choice(own)
            ids.remove((target, user))
            await socket.send_json_to({"type": "delete", "id": target})
        else:
            target = rng.choice(ids)[0]
            emoji = rng.choice(("👍", "🎉"))
            await socket.send_json_to(
                {"type": "react", "id": target, "emoji": emoji, "on": rng.random() < 0.7}
            )
        await joined(socket)
    await joined(a)
    room_seq = (await Room.objects.aget(pk=room.pk)).last_seq
    state: dict[int, dict] = {}
    seqs = []
    while not seqs or seqs[-1] < room_seq:
        frame = await receive(watcher)
        if "seq" in frame and frame["type"] != "synced":
            seqs.append(frame["seq"])
            apply(state, frame)
    assert seqs == list(range(1, room_seq + 1))
    assert state == await database_sync_to_async(stored_state)(room)


# -- Catch-up is exact: stale state + catch-up == fresh state == stored state -----------

change = st.one_of(
    st.tuples(st.just("post"), st.integers(0, 1), st.integers(0, 10**6)),
    st.tuples(st.just("reply"), st.integers(0, 1), st.integers(0, 50)),
    st.tuples(st.just("edit"), st.integers(0, 1), st.integers(0, 50)),
    st.tuples(st.just("delete"), st.integers(0, 2), st.integers(0, 50)),
    st.tuples(st.just("react"), st.integers(0, 1), st.integers(0, 50)),
    st.tuples(st.just("unreact"), st.integers(0, 1), st.integers(0, 50)),
)


def make_change(room: Room, users: list, step: tuple) -> None:
    kind, who, pick = step
    user = users[who]
    live = list(Message.objects.filter(room=room, deleted__isnull=True).order_by("seq"))
    if kind == "post" or not live:
        services.message_create(room=room, author=user, body=f"m{pick}")
        return
    target = live[pick % len(live)]
    try:
        if kind == "reply":
            services.message_create(room=room, author=user, body=f"re {pick}", reply_to=target)
        elif kind == "edit":
            services.message_edit(message=target, user=target.author, body=f"edit {pick}")
        elif kind == "delete":
            services.message_delete(message=target, user=users[2] if who == 2 else target.author)
        else:
            emoji = "👍❤️🎉"[pick % 3] if pick % 3 != 1 else "❤️"
            services.reaction_set(message=target, user=user, emoji=emoji, on=kind == "react")
    except services.ChangeRefused:
        pass


@pytest.mark.django_db
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.lists(change, max_size=12),
    after=st.lists(change, min_size=1, max_size=12),
    limit=st.integers(1, 6),
)
def test_catch_up_from_any_seq_brings_a_stale_client_to_the_fresh_state(before, after, limit):
    with transaction.atomic():
        users = [user_create() for _ in range(2)]
        owner = user_create()
        owner.is_staff = True
        room = services.room_create(name=f"Room {owner.pk}", created_by=owner)
        users.append(owner)
        for step in before:
            make_change(room, users, step)
        stale: dict[int, dict] = {}
        stale_seq = catch_up(stale, room, 0, limit)
        for step in after:
            make_change(room, users, step)
        catch_up(stale, room, stale_seq, limit)
        fresh: dict[int, dict] = {}
        catch_up(fresh, room, 0, limit)
        assert stale == fresh == stored_state(room)
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_staff_delete_messages_from_the_admin_through_the_change_contract(client):
    staff = user_create("root")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    room = room_make("General", created_by=staff)
    message = services.message_create(room=room, author=user_create("spammer"), body="buy now")
    client.force_login(staff)
    response = client.post(
        "/admin/rooms/message/",
        {"action": "delete_for_everyone", "_selected_action": [message.pk]},
    )
    assert response.status_code == 302
    message.refresh_from_db()
    room.refresh_from_db()
    assert (message.body, message.changed_seq, room.last_seq) == ("", 2, 2)
    assert message.deleted is not None
    # A plain edit would bypass seq and reach no client: the admin offers none.
    assert client.post(f"/admin/rooms/message/{message.pk}/change/", {}).status_code == 403
