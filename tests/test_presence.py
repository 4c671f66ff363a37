"""Presence and typing on one process (the embedded default), with WebsocketCommunicator.

Online means at least one open socket of the user, on any page; a room's ``presence`` frame
lists its online members, at most once a second; ``typing`` reaches the room's other users
only, is never stored, takes no seq and is throttled per socket.
"""

import asyncio
import itertools
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from realtime.hub import Hub
from realtime.presence import TICK
from rooms import services

from .conftest import receive, receive_type
from .factories import room_make, user_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

WAIT = 5.0  # seconds a change may take to show (one tick is 1 s; the machine is shared)


async def frames_for(
    socket: WebsocketCommunicator, seconds: float, times: list[float] | None = None
) -> list[dict]:
    """Every frame a socket receives during ``seconds`` (their arrival times in ``times``)."""
    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        # receive_nothing waits without cancelling the application on a timeout, as
        # receive_from does.
        if not await socket.receive_nothing(timeout=0.05, interval=0.01):
            frames.append(await receive(socket))
            if times is not None:
                times.append(time.monotonic())
    return frames


async def presence_until(socket: WebsocketCommunicator, online: list[str]) -> list[dict]:
    """The presence frames a socket receives until one lists exactly ``online``."""
    seen, deadline = [], time.monotonic() + WAIT
    while time.monotonic() < deadline:
        frame = await receive_type(socket, "presence", timeout=WAIT)
        seen.append(frame)
        if frame["online"] == online:
            return seen
    raise AssertionError(f"no presence frame listing {online}: {seen}")


@pytest.fixture
def users(db):
    return {name: user_create(name) for name in ("alice", "bob", "carol")}


def path(room, presence: bool = True) -> str:
    return f"/ws/rooms/{room.slug}/" + ("?presence=1" if presence else "")


async def test_a_room_socket_gets_its_online_members_on_connect_and_when_they_change(
    connect, users
):
    room = await database_sync_to_async(room_make)("Lobby", users["alice"])
    alice = await connect(path(room), users["alice"])
    first = await receive_type(alice, "presence", timeout=WAIT)
    assert first == {"type": "presence", "room": room.slug, "online": ["alice"], "count": 1}
    bob = await connect(path(room, presence=False), users["bob"])
    await presence_until(alice, ["alice", "bob"])
    await bob.disconnect()
    await presence_until(alice, ["alice"])


async def test_a_user_with_two_tabs_who_closes_one_stays_online(connect, users):
    room = await database_sync_to_async(room_make)("Two tabs", users["alice"])
    alice = await connect(path(room), users["alice"])
    tab1 = await connect(path(room), users["bob"])
    tab2 = await connect(path(room), users["bob"])
    await presence_until(alice, ["alice", "bob"])
    await tab1.disconnect()
    # Several ticks pass: bob is never listed offline while his other tab is open.
    later = [f for f in await frames_for(alice, 3 * TICK) if f["type"] == "presence"]
    assert all("bob" in f["online"] for f in later), later
    await presence_until(tab2, ["alice", "bob"])
    await tab2.disconnect()
    await presence_until(alice, ["alice"])


async def test_a_member_online_on_any_page_is_listed_and_a_non_member_is_not(connect, users):
    room = await database_sync_to_async(room_make)("Members", users["alice"])
    await database_sync_to_async(services.room_join)(room=room, user=users["bob"])
    alice = await connect(path(room), users["alice"])
    # bob (a member) is on another page; carol (not a member) too.
    await connect("/ws/notifications/", users["bob"])
    await connect("/ws/notifications/", users["carol"])
    await presence_until(alice, ["alice", "bob"])
    later = [f for f in await frames_for(alice, 2 * TICK) if f["type"] == "presence"]
    assert all("carol" not in f["online"] for f in later), later


async def test_a_direct_conversation_shows_whether_the_other_person_is_online(connect, users):
    room = await database_sync_to_async(services.direct_open)(users=[users["alice"], users["bob"]])
    alice = await connect(path(room), users["alice"])
    assert (await receive_type(alice, "presence", timeout=WAIT))["online"] == ["alice"]
    elsewhere = await connect("/ws/notifications/", users["bob"])
    await presence_until(alice, ["alice", "bob"])
    await elsewhere.disconnect()
    await presence_until(alice, ["alice"])


async def test_private_room_presence_reaches_members_only_and_lists_members_only(connect, users):
    room = await database_sync_to_async(services.room_create)(
        name="Secret", created_by=users["alice"], private=True
    )
    await database_sync_to_async(services.member_add)(
        room=room, by=users["alice"], user=users["bob"]
    )
    lobby = await database_sync_to_async(room_make)("Open", users["carol"])
    alice = await connect(path(room), users["alice"])
    carol_lobby = await connect(path(lobby), users["carol"])
    await connect(path(room), users["bob"])
    frames = await presence_until(alice, ["alice", "bob"])
    # carol is online but not a member: never listed; her own socket of the room gets nothing.
    assert all("carol" not in f["online"] for f in frames)
    intruder = await connect(path(room), users["carol"])
    assert (await intruder.receive_output(timeout=WAIT))["type"] == "websocket.close"
    seen = await frames_for(carol_lobby, 2 * TICK)
    assert all(f.get("room") != room.slug for f in seen), seen
    assert room.slug not in str(seen)


async def test_a_member_removed_from_a_private_room_leaves_its_list_though_still_online(
    connect, users
):
    room = await database_sync_to_async(services.room_create)(
        name="Club", created_by=users["alice"], private=True
    )
    await database_sync_to_async(services.member_add)(
        room=room, by=users["alice"], user=users["bob"]
    )
    alice = await connect(path(room), users["alice"])
    await connect("/ws/notifications/", users["bob"])  # online, on another page
    await presence_until(alice, ["alice", "bob"])
    await database_sync_to_async(services.member_remove)(
        room=room, by=users["alice"], user=users["bob"]
    )
    await presence_until(alice, ["alice"])


async def test_presence_frames_are_coalesced_to_one_per_room_per_second(connect, users):
    room = await database_sync_to_async(room_make)("Busy", users["alice"])
    crowd = [await database_sync_to_async(user_create)(f"guest{i}") for i in range(12)]
    alice = await connect(path(room), users["alice"])
    await receive_type(alice, "presence", timeout=WAIT)
    # Guests come and go every 0.15 s, two at a time in the room, so the list changes all along.

    async def churn() -> float:
        started, inside = time.monotonic(), []
        for guest in crowd:
            inside.append(await connect(path(room, presence=False), guest))
            await asyncio.sleep(0.15)
            if len(inside) > 2:
                await inside.pop(0).disconnect()
        for socket in inside:
            await socket.disconnect()
        return time.monotonic() - started

    times: list[float] = []
    churned, frames = await asyncio.gather(churn(), frames_for(alice, 6 * TICK, times))
    seen = [f for f in frames if f["type"] == "presence"]
    at = [t for t, f in zip(times, frames, strict=True) if f["type"] == "presence"]
    print(f"{2 * len(crowd)} changes in {churned:.1f}s: {len(seen)} presence frames")
    assert len(seen) >= 2, "the changes were not announced as they happened"
    assert len(seen) <= 6 / TICK + 1, len(seen)
    # Never two frames less than a second apart (measured here, so with slack for a busy
    # machine; without coalescing they would come every 0.15 s).
    assert all(b - a >= 0.5 * TICK for a, b in itertools.pairwise(at)), at
    assert seen[-1]["online"] == ["alice"]


async def test_typing_reaches_the_others_in_the_room_never_the_typist(connect, users):
    room = await database_sync_to_async(room_make)("Typing", users["alice"])
    alice = await connect(path(room), users["alice"])
    bob = await connect(path(room), users["bob"])
    bob_tab = await connect(path(room), users["bob"])
    await bob.send_json_to({"type": "typing"})
    assert await receive_type(alice, "typing", timeout=WAIT) == {"type": "typing", "user": "bob"}
    for tab in (bob, bob_tab):
        assert all(f["type"] != "typing" for f in await frames_for(tab, 0.5))


async def test_typing_is_throttled_per_socket_and_never_stored_or_numbered(connect, users):
    room = await database_sync_to_async(room_make)("Quiet", users["alice"])
    alice = await connect(path(room), users["alice"])
    bob = await connect(path(room), users["bob"])
    for _ in range(5):
        await bob.send_json_to({"type": "typing"})
    typing = [f for f in await frames_for(alice, 1.0) if f["type"] == "typing"]
    assert len(typing) == 1
    assert "seq" not in typing[0]
    # The room's seq did not move: the next message is seq 1, and a catch-up has no typing.
    await bob.send_json_to({"type": "message", "body": "hi"})
    assert (await receive_type(alice, "message"))["seq"] == 1
    await alice.send_json_to({"type": "sync", "after": 0})
    replay = []
    while (frame := await receive(alice, timeout=WAIT))["type"] != "synced":
        replay.append(frame)
    assert [f["type"] for f in replay if f["type"] != "presence"] == ["message"]
    assert frame["last_seq"] == 1


@override_settings(CHAT_TYPING_MAX_ONLINE=2)
async def test_typing_is_off_in_a_room_with_more_members_online_than_the_limit(connect, users):
    room = await database_sync_to_async(room_make)("Crowded", users["alice"])
    alice = await connect(path(room), users["alice"])
    bob = await connect(path(room), users["bob"])
    await presence_until(alice, ["alice", "bob"])  # two online: at the (lowered) limit
    await bob.send_json_to({"type": "typing"})
    assert await receive_type(alice, "typing", timeout=WAIT) == {"type": "typing", "user": "bob"}
    await connect(path(room), users["carol"])
    await presence_until(alice, ["alice", "bob", "carol"])  # three: above it
    await asyncio.sleep(2.0)  # past bob's throttle interval
    await bob.send_json_to({"type": "typing"})
    assert all(f["type"] != "typing" for f in await frames_for(alice, 1.0))


class Recorder:
    """A hub subscriber (a socket of ``user_id``) that remembers the seqs handed to it."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.seqs: list[int | None] = []

    def deliver_frame(self, frame: str, seq: int | None) -> None:
        self.seqs.append(seq)

    def revoke(self, user_id: int) -> None:
        pass


async def test_typing_passes_the_hub_at_once_without_disturbing_the_rooms_seq_order():
    hub = Hub()
    typist, other = Recorder(7), Recorder(8)
    await hub.subscribe("room-1", typist)
    await hub.subscribe("room-1", other)

    def stored(seq: int) -> dict:
        return {"type": "hub.frame", "group": "room-1", "frame": "{}", "seq": seq}

    typing = {"type": "hub.frame", "group": "room-1", "frame": "{}", "seq": None, "skip_user": 7}
    hub.dispatch_ordered(stored(1))
    hub.dispatch_ordered(stored(3))  # held until 2 arrives
    hub.dispatch_ordered(typing)  # no seq: passed on now, not held, not counted
    hub.dispatch_ordered(stored(2))
    assert other.seqs == [1, None, 2, 3]
    assert typist.seqs == [1, 2, 3]  # never the typist's own sockets
    for task in (hub._reader, hub._refresher, hub._watchdog):
        task.cancel()
