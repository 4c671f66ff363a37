"""Limits per user, not per socket, across two uvicorn workers on Redis (issue 13, findings 4
and 5): a user's frames share one budget however many sockets and workers they use, a flood
that goes on is closed with 4429, a user's open sockets are capped, and ``sync`` costs what it
answers with. Everyone else in the room is unaffected."""

import asyncio
import time

import pytest
from django.test import override_settings

from rooms.models import Message

from .conftest import receive, receive_type
from .support.clients import RecordedSocket
from .support.server import manage, room_create
from .support.sockets import Sockets, redis_node

RATE, BURST, CAP, CLOSE_AFTER = 5, 20, 8, 30
SYNC_RATE, SYNC_BURST = 1000, 2000


@pytest.fixture(scope="module")
def site():
    with redis_node(
        CHAT_RATE_PER_SECOND=str(RATE),
        CHAT_RATE_BURST=str(BURST),
        CHAT_SOCKETS_PER_USER=str(CAP),
        CHAT_RATE_CLOSE_AFTER=str(CLOSE_AFTER),
        CHAT_SYNC_FRAMES_PER_SECOND=str(SYNC_RATE),
        CHAT_SYNC_FRAMES_BURST=str(SYNC_BURST),
    ) as running:
        assert len(running.pids) == 2
        yield running


async def _sockets(site: Sockets, session, path: str, count: int) -> list[RecordedSocket]:
    """``count`` joined sockets of ``session``, on both workers."""
    sockets = await site.open_on_every_worker(session, path)
    while len(sockets) < count:
        sockets.append(await site.open_joined(session, path))
    return sockets


def _codes(socket: RecordedSocket) -> list[str]:
    return [f["code"] for f in socket.frames if f["type"] == "error"]


async def _settled(sockets: list[RecordedSocket], answers: int, user: str) -> None:
    """Wait until ``user``'s sockets together got ``answers`` of their messages and errors."""

    def answered() -> int:
        errors = sum(1 for s in sockets for f in s.frames if f["type"] == "error")
        mine = {f["id"] for s in sockets for f in s.frames if f.get("user") == user}
        return errors + len(mine)

    await sockets[0].wait(lambda: answered() >= answers, 20)


@pytest.mark.server
def test_one_budget_per_user_across_sockets_and_workers_and_others_unaffected(site):
    alice, bob = site.signup("alice"), site.signup("bob")
    path = room_create(bob, "Flooded")
    each = 10

    async def scenario():
        floods = await _sockets(site, alice, path, 6)
        watcher = await site.open_joined(bob, path)
        before = {f["id"] for f in watcher.frames if f["type"] == "message"}
        started = time.monotonic()
        await asyncio.gather(
            *(
                s.send(type="message", body=f"flood {i} {n}")
                for n in range(each)
                for i, s in enumerate(floods)
            )
        )
        for n in range(3):  # bob talks during the flood
            await watcher.send(type="message", body=f"bob {n}")
        await _settled(floods, len(floods) * each, "alice")
        elapsed = time.monotonic() - started
        await watcher.wait(lambda: sum(b.startswith("bob") for b in watcher.bodies()) == 3, 10)
        stored = [
            f
            for f in watcher.frames
            if f["type"] == "message" and f["id"] not in before and f["user"] == "alice"
        ]
        refused = sum(_codes(s).count("rate_limited") for s in floods)
        for socket in (*floods, watcher):
            await socket.close()
        return floods, watcher, stored, refused, elapsed

    floods, watcher, stored, refused, elapsed = asyncio.run(scenario())
    print(f"{len(stored)} stored, {refused} refused in {elapsed:.2f}s")
    assert {s.pid for s in floods} == site.pids
    # One bucket for alice: her burst and what refilled meanwhile, not 6 sockets' worth.
    assert BURST <= len(stored) <= BURST + RATE * elapsed + 1, (len(stored), elapsed)
    assert len(stored) + refused == len(floods) * each
    assert [b for b in watcher.bodies() if b.startswith("bob")] == ["bob 0", "bob 1", "bob 2"]
    assert _codes(watcher) == []


@pytest.mark.server
def test_a_flood_that_goes_on_is_closed_with_4429_and_the_room_goes_on(site):
    carol, frank = site.signup("carol"), site.signup("frank")
    path = room_create(frank, "Closing floods")

    async def scenario():
        flood = await site.open_joined(carol, path)
        watcher = await site.open_joined(frank, path)
        for n in range(BURST + CLOSE_AFTER + 20):
            try:
                await flood.send(type="message", body=f"flood {n}")
            except Exception:
                break  # closed under us
        closed = await flood.ended(10)
        await watcher.send(type="message", body="still here")
        assert await watcher.wait(lambda: "still here" in watcher.bodies(), 10)
        await watcher.close()
        return flood, closed, watcher

    flood, closed, watcher = asyncio.run(scenario())
    assert closed and flood.close_code == 4429
    assert _codes(flood).count("rate_limited") == CLOSE_AFTER
    # Its burst was stored (the room saw it; a socket closing drops what it had not written).
    assert sum(f.get("user") == "carol" for f in watcher.frames) >= BURST


@pytest.mark.server
def test_a_user_opens_at_most_the_cap_of_sockets_across_workers(site):
    dave = site.signup("dave")
    path = room_create(dave, "Many tabs")

    async def scenario():
        sockets = await _sockets(site, dave, path, CAP - 1)
        sockets.append(await site.open(dave, "/notifications/"))
        await sockets[-1].next({"notification.unread"})
        past = await site.open(dave, f"{path}?after=0")
        refused = await past.ended(10), past.close_code, past.frames
        # A socket closed frees its place, on whichever worker.
        await sockets.pop(0).close()
        again = await site.open_joined(dave, path)
        alive = [s.close_code for s in (*sockets, again)]
        for socket in (*sockets, again):
            await socket.close()
        return sockets, refused, alive

    sockets, (ended, code, frames), alive = asyncio.run(scenario())
    assert {s.pid for s in sockets} == site.pids  # counted across both workers
    assert ended and code == 4429 and frames == []
    assert alive == [None] * CAP


@pytest.mark.server
def test_sync_answers_cost_the_users_budget_so_repeated_syncs_do_not_amplify(site):
    erin = site.signup("erin")
    path = room_create(erin, "Long history")
    slug = path.strip("/").split("/")[-1]
    count = 500
    manage(
        site.node.env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from rooms.models import Room; "
        "from rooms.services import message_create; "
        "user = get_user_model().objects.get(username='erin'); "
        f"room = Room.objects.get(slug={slug!r}); "
        f"[message_create(room=room, author=user, body=f'old {{i}}') for i in range({count})]",
    )

    async def scenario():
        socket = await site.open(erin, path)
        started = time.monotonic()
        for _ in range(100):
            await socket.send(type="sync", after=0)
        await socket.wait(
            lambda: (
                socket.close_code is not None
                or sum(
                    f["type"] == "synced" or f.get("code") == "rate_limited" for f in socket.frames
                )
                == 100
            ),
            30,
        )
        elapsed = time.monotonic() - started
        await socket.close()
        return socket, elapsed

    socket, elapsed = asyncio.run(scenario())
    syncs = sum(f["type"] == "synced" for f in socket.frames)
    refused = _codes(socket).count("rate_limited")
    print(f"{len(socket.frames)} frames, {syncs} syncs answered, {refused} refused, {elapsed:.2f}s")
    # Before: 100 syncs of 500 messages answered 50,100 frames. Now the budget bounds it.
    assert syncs >= SYNC_BURST // count
    assert len(socket.frames) <= SYNC_BURST + SYNC_RATE * elapsed + count + 1
    assert len(socket.frames) < 10_000
    assert syncs + refused == 100 or socket.close_code == 4429


# The embedded default (one process, no Redis) counts in the process, per user all the same.


@pytest.mark.django_db(transaction=True)
@override_settings(CHAT_RATE_PER_SECOND=0.001, CHAT_RATE_BURST=4)
async def test_in_process_two_sockets_of_a_user_share_one_budget(connect, alice, bob, room):
    path = f"/ws/rooms/{room.slug}/"
    first, second = [await connect(path, alice) for _ in range(2)]
    other = await connect(path, bob)
    for n in range(6):
        await (first, second)[n % 2].send_json_to({"type": "message", "body": f"alice {n}"})
    refused = 0
    for socket in (first, second):
        await socket.send_json_to({"type": "sync", "after": 2**62})  # answered after the rest
        while (frame := await receive(socket))["type"] != "synced":
            refused += frame.get("code") == "rate_limited"
    assert refused == 2
    assert await Message.objects.filter(author=alice).acount() == 4
    await other.send_json_to({"type": "message", "body": "bob is not limited by alice"})
    while (await receive(other))["body"] != "bob is not limited by alice":
        pass


@pytest.mark.django_db(transaction=True)
@override_settings(CHAT_SOCKETS_PER_USER=2)
async def test_in_process_the_socket_past_the_cap_is_closed_4429(connect, alice, room):
    path = f"/ws/rooms/{room.slug}/"
    first, _ = await connect(path, alice), await connect("/ws/notifications/", alice)
    third = await connect(path, alice)
    assert await third.receive_output(timeout=3) == {"type": "websocket.close", "code": 4429}
    await first.disconnect()
    fourth = await connect(path, alice)
    await fourth.send_json_to({"type": "sync", "after": 0})
    assert (await receive(fourth))["type"] == "synced"


@pytest.mark.django_db(transaction=True)
@override_settings(
    CHAT_RATE_PER_SECOND=0.001,
    CHAT_RATE_BURST=3,
    CHAT_SYNC_FRAMES_PER_SECOND=0.001,
    CHAT_SYNC_FRAMES_BURST=3,
    CHAT_TYPING_INTERVAL=0,
)
async def test_typing_read_and_history_frames_spend_the_users_budgets_too(
    connect, alice, bob, room
):
    """Every client frame type that makes the server work is limited per user: ``typing`` and
    ``read`` have budgets of their own (reading must not eat into sending); ``history`` spends
    the sync budget by its size, as a catch-up does."""
    path = f"/ws/rooms/{room.slug}/"
    first, second = [await connect(path, alice) for _ in range(2)]
    watcher = await connect(path, bob)

    async def answers(frames: list[dict]) -> list[str]:
        """Send ``frames`` from alice's two sockets in turn; the error codes they got."""
        for n, frame in enumerate(frames):
            await (first, second)[n % 2].send_json_to(frame)
        codes = []
        for socket in (first, second):
            # An unknown type is never limited and is answered after the frames before it.
            await socket.send_json_to({"type": "fence"})
            while (frame := await receive(socket)).get("code") != "unknown_type":
                if frame["type"] == "error":
                    codes.append(frame["code"])
        return codes

    assert await answers([{"type": "typing"}] * 5) == ["rate_limited"] * 2
    assert await answers([{"type": "read", "seq": 0}] * 5) == ["rate_limited"] * 2
    # The read budget was its own: alice can still send.
    await first.send_json_to({"type": "message", "body": "still sending"})
    assert (await receive_type(first, "message"))["body"] == "still sending"
    history = [{"type": "history", "before": 10**6, "limit": 1}] * 5
    assert (await answers(history)).count("rate_limited") >= 2
    # bob's budgets are his own.
    await watcher.send_json_to({"type": "typing"})
    await watcher.send_json_to({"type": "fence"})
    assert (await receive_type(watcher, "error"))["code"] == "unknown_type"
