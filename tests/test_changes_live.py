"""The change contract through real servers: uvicorn subprocesses, real redis-server and
PostgreSQL, real WebSocket clients (the ``websockets`` library).

- A property test: random sequences of posts, replies, edits, deletions and reactions (valid,
  refused and no-op ones) while a watcher is away; the watcher's catch-up (``?after=`` or
  ``sync``) must leave it exactly where a fresh client syncing from 0 is, and both exactly where
  the database is. On one worker (SQLite), on two workers (Redis, PostgreSQL), and with the
  catch-up cut into pages of a few messages.
- Idempotent send: one ``client_id`` sent at the same instant on two sockets on two workers, and
  again after a reconnect, stores one message; every answer carries its id and seq.
- Live order: frames of every kind from two writers on two workers reach every socket in seq
  order, each once.

The database is read directly (sqlite3 / psycopg, plain SQL), not through the server's code, so
it is an independent witness. Set ``CHAT_PROPERTY_SEED`` to replay a printed seed.
"""

import asyncio
import contextlib
import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support.clients import RecordedSocket
from .support.server import cookie_header, live_server, room_create, signup
from .support.services import migrate, node_env, node_start, postgres_server, redis_server

pytestmark = pytest.mark.server

# The property test makes hundreds of changes per second from one socket.
FAST = {"CHAT_RATE_PER_SECOND": "100000", "CHAT_RATE_BURST": "100000"}
WRITERS = ("amy", "zed")  # amy creates the rooms: she is their owner
WATCHER = "wes"
USERS = (*WRITERS, WATCHER)
CHANGES = frozenset({"message", "message.edited", "message.deleted", "reactions"})
# Frames that take a place in the room's seq order (a removal does, in private rooms).
SEQUENCED = CHANGES | {"member.removed"}
EMOJI = ("👍", "❤️", "🎉", "👍🏽", "👨‍👩‍👧")
WORDS = ("hello", "héllo", "日本語", "🙂", "ok", "a\nb", "<b>x</b>", "ça va", "42", "&amp;")
DELETED = {"deleted": True}


# ---------------------------------------------------------------------------------------------
# Real sockets


class Conn(RecordedSocket):
    """A room socket of the property test."""

    def changes(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] in SEQUENCED]


@dataclass
class Site:
    """A running server (one uvicorn, or one uvicorn of several workers) and its database."""

    url: str
    ws_url: str
    sql: Callable[..., list[tuple]]
    sessions: dict[str, httpx.Client] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    log: Callable[[], str] = lambda: ""

    async def open(self, user: str, path: str, after: int | None = None) -> Conn:
        query = "" if after is None else f"?after={after}"
        url = f"{self.ws_url}/ws{path}{query}"
        return await Conn.open(url, self.url, cookie_header(self.sessions[user]))

    async def open_on(self, user: str, path: str, pids: set[int], after: int = 0) -> Conn:
        """A socket of ``user`` served by one of ``pids`` (bounded tries: the kernel picks)."""
        for _ in range(40):
            conn = await self.open(user, path, after)
            if conn.pid in pids:
                await conn.next({"synced"})
                return conn
            await conn.close()
        raise AssertionError(f"no socket of {user} landed on {pids} in 40 tries")


def sqlite_reader(path: str) -> Callable[..., list[tuple]]:
    def run(query: str, params: tuple = ()) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(path, timeout=20)) as db:
            return db.execute(query.replace("%s", "?"), params).fetchall()

    return run


def postgres_reader(port: int) -> Callable[..., list[tuple]]:
    def run(query: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=chat"
        with psycopg.connect(dsn, autocommit=True) as db:
            return db.execute(query, params).fetchall()

    return run


def stored_state(site: Site, slug: str) -> tuple[dict[int, dict], int]:
    """A room's messages as the database holds them, and its ``last_seq`` (plain SQL)."""
    [(room_id, last_seq)] = site.sql("SELECT id, last_seq FROM rooms_room WHERE slug = %s", (slug,))
    items: dict[int, dict] = {}
    rows = site.sql(
        "SELECT m.id, u.username, m.body, m.deleted IS NOT NULL, m.reply_to_id, "
        "m.edited IS NOT NULL FROM rooms_message m JOIN auth_user u ON u.id = m.author_id "
        "WHERE m.room_id = %s",
        (room_id,),
    )
    for message_id, user, body, deleted, reply_to, edited in rows:
        items[message_id] = (
            dict(DELETED)
            if deleted
            else {
                "user": user,
                "body": body,
                "reply_to": reply_to,
                "edited": bool(edited),
                "reactions": {},
            }
        )
    reactions = site.sql(
        "SELECT r.message_id, r.emoji, u.username FROM rooms_reaction r "
        "JOIN rooms_message m ON m.id = r.message_id JOIN auth_user u ON u.id = r.user_id "
        "WHERE m.room_id = %s ORDER BY r.id",
        (room_id,),
    )
    for message_id, emoji, user in reactions:
        assert items[message_id] != DELETED, f"deleted message {message_id} kept a reaction"
        items[message_id]["reactions"].setdefault(emoji, []).append(user)
    return items, last_seq


# ---------------------------------------------------------------------------------------------
# A client's picture of a room, built only from frames


class View:
    """What a client knows of a room: message id -> state, and the seq it is current to.

    Frames are applied by message id (docs/protocol.md, client rules): ``message`` replaces,
    ``message.deleted`` leaves a tombstone, ``message.edited`` / ``reactions`` update. A delta
    frame for an id it does not hold is ignored and noted in ``orphans``.
    """

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self.last_seq = 0
        self.orphans: list[dict[str, Any]] = []

    def apply(self, frame: dict[str, Any]) -> None:
        kind, message_id = frame["type"], frame.get("id")
        if kind == "message":
            self.items[message_id] = {
                "user": frame["user"],
                "body": frame["body"],
                "reply_to": frame["reply_to"],
                "edited": frame["edited"],
                "reactions": frame["reactions"],
            }
        elif kind == "message.deleted":
            self.items[message_id] = dict(DELETED)
        elif kind in ("message.edited", "reactions"):
            item = self.items.get(message_id)
            if item is None or item == DELETED:
                self.orphans.append(frame)
            elif kind == "message.edited":
                item.update(body=frame["body"], edited=frame["edited"])
            else:
                item["reactions"] = frame["reactions"]

    def apply_live(self, frame: dict[str, Any]) -> None:
        """A live frame: it must be the very next seq."""
        assert frame["seq"] == self.last_seq + 1, f"live seq {frame['seq']} after {self.last_seq}"
        self.last_seq = frame["seq"]
        self.apply(frame)

    def as_stored(self) -> dict[int, dict]:
        """The state in the database's terms (``edited`` as a flag)."""
        return {
            message_id: item if item == DELETED else {**item, "edited": item["edited"] is not None}
            for message_id, item in self.items.items()
        }


async def catch_up(conn: Conn, view: View) -> dict[str, Any]:
    """Apply a catch-up (already asked for) until ``synced``; follow ``more`` with ``sync``."""
    pages = 0
    while True:
        frame = await conn.next(SEQUENCED | {"synced", "error"})
        assert frame["type"] != "error", frame
        if frame["type"] != "synced":
            view.apply(frame)
            continue
        view.last_seq = max(view.last_seq, frame["last_seq"])
        pages += 1
        if not frame["more"]:
            frame["pages"] = pages
            return frame
        assert pages < 1000, "catch-up did not end"
        await conn.send(type="sync", after=frame["last_seq"])


# ---------------------------------------------------------------------------------------------
# The writers: random changes, each with its outcome predicted and checked


@dataclass
class Item:
    """The driver's own model of a stored message."""

    user: str
    body: str
    reply_to: int | None
    client_id: str | None
    seq: int
    edited: bool = False
    deleted: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)

    def stored(self) -> dict:
        if self.deleted:
            return dict(DELETED)
        return {
            "user": self.user,
            "body": self.body,
            "reply_to": self.reply_to,
            "edited": self.edited,
            "reactions": {emoji: list(users) for emoji, users in self.reactions.items()},
        }


class Driver:
    """Makes random changes in one room through the writers' sockets, one at a time, and checks
    each one's outcome: a frame with the next seq on every writer socket, an error, or nothing
    (then a ``sync`` proves no seq was taken)."""

    def __init__(self, rng: random.Random, conns: dict[str, Conn], slug: str, shared: dict):
        self.rng = rng
        self.conns = conns
        self.slug = slug
        self.shared = shared  # across rooms: client ids used, ids of other rooms' messages
        self.seq = 0
        self.items: dict[int, Item] = {}
        self.log: list[str] = []
        self.last_target: int | None = None
        self.counts: dict[str, int] = {}

    # -- outcomes

    async def expect_change(self, kind: str, message_id: int | None = None) -> dict:
        self.seq += 1
        frames = []
        for name, conn in self.conns.items():
            frame = await conn.next(CHANGES | {"error"})
            assert (frame["type"], frame["seq"]) == (kind, self.seq), (name, frame)
            if message_id is not None:
                assert frame["id"] == message_id, (name, frame)
            frames.append(frame)
        assert all(frame == frames[0] for frame in frames), frames
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return frames[0]

    async def expect_nothing_stored(self, user: str) -> None:
        conn = self.conns[user]
        await conn.send(type="sync", after=self.seq)
        frame = await conn.next(CHANGES | {"synced", "error"})
        assert frame == {"type": "synced", "last_seq": self.seq, "more": False}, frame

    async def expect_error(self, user: str, code: str) -> None:
        frame = await self.conns[user].next(CHANGES | {"error"})
        assert (frame["type"], frame.get("code")) == ("error", code), frame
        self.counts["error"] = self.counts.get("error", 0) + 1
        await self.expect_nothing_stored(user)

    async def expect_no_op(self, user: str) -> None:
        self.counts["no-op"] = self.counts.get("no-op", 0) + 1
        await self.expect_nothing_stored(user)

    # -- choices

    def body(self) -> str:
        text = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(1, 4)))
        return f"  {text} \n" if self.rng.random() < 0.1 else text

    def pick(self) -> int:
        """A message to change: often the last one changed, mostly one not deleted."""
        if self.last_target is not None and self.rng.random() < 0.4:
            return self.last_target
        alive = [i for i, item in self.items.items() if not item.deleted]
        pool = alive if alive and self.rng.random() < 0.9 else list(self.items)
        self.last_target = self.rng.choice(pool)
        return self.last_target

    def foreign_id(self) -> int | None:
        """An id that is no message of this room (another room's, or none at all)."""
        others = self.shared["foreign_ids"]
        if others and self.rng.random() < 0.7:
            return self.rng.choice(others)
        return self.rng.choice([10**12, 2**63 - 1, 0, -1])

    async def step(self) -> None:
        roll = self.rng.random()
        if not self.items or roll < 0.33:
            await self.post()
        elif roll < 0.40:
            await self.retry()
        elif roll < 0.60:
            await self.edit()
        elif roll < 0.70:
            await self.delete()
        else:
            await self.react()

    # -- changes

    async def post(self) -> None:
        user = self.rng.choice(WRITERS)
        body = self.body()
        frame: dict[str, Any] = {"type": "message", "body": body}
        client_id = None
        if self.rng.random() < 0.6:
            self.shared["client_ids"] += 1
            client_id = f"c{self.shared['client_ids']}-{self.rng.randrange(10**6)}"
            frame["client_id"] = client_id
        reply_to = None
        refused = False
        if self.items and self.rng.random() < 0.3:
            reply_to = self.pick()
            refused = self.items[reply_to].deleted
            frame["reply_to"] = reply_to
        elif self.rng.random() < 0.03:
            frame["reply_to"] = self.foreign_id()
            refused = True
        self.log.append(f"{user} posts {frame}")
        await self.conns[user].send(**frame)
        if refused:
            await self.expect_error(user, "not_found")
            return
        got = await self.expect_change("message")
        expected = {
            "user": user,
            "body": body.strip(),
            "room": self.slug,
            "client_id": client_id,
            "reply_to": reply_to,
            "edited": None,
            "reactions": {},
        }
        assert {key: got[key] for key in expected} == expected, got
        if reply_to is not None:
            parent = self.items[reply_to]
            assert (got["reply"]["id"], got["reply"]["user"]) == (reply_to, parent.user), got
        self.items[got["id"]] = Item(user, body.strip(), reply_to, client_id, got["seq"])
        if client_id is not None:
            self.shared["used"][(user, client_id)] = (self.slug, got["id"])
        self.last_target = got["id"]

    async def retry(self) -> None:
        """Send a used client_id again: the original comes back to that socket alone."""
        used = [(key, where) for key, where in self.shared["used"].items()]
        if not used:
            await self.post()
            return
        (user, client_id), (slug, message_id) = self.rng.choice(used)
        body = self.body() if self.rng.random() < 0.5 else "retry"
        self.log.append(f"{user} retries {client_id} ({slug} #{message_id}) with {body!r}")
        await self.conns[user].send(type="message", body=body, client_id=client_id)
        if slug != self.slug:
            await self.expect_error(user, "invalid_client_id")
            return
        item = self.items[message_id]
        original = await self.conns[user].next(CHANGES | {"error"})
        assert (original["type"], original["id"], original["seq"]) == (
            "message",
            message_id,
            item.seq,
        ), original
        assert original["client_id"] == client_id, original
        assert original["body"] == ("" if item.deleted else item.body), original
        if item.deleted:
            tombstone = await self.conns[user].next(CHANGES | {"error"})
            assert (tombstone["type"], tombstone["id"]) == ("message.deleted", message_id)
        else:
            assert original["reactions"] == item.stored()["reactions"], original
            assert (original["edited"] is not None) == item.edited, original
        self.counts["retry"] = self.counts.get("retry", 0) + 1
        await self.expect_nothing_stored(user)

    async def edit(self) -> None:
        foreign = self.rng.random() < 0.03
        target = self.foreign_id() if foreign else self.pick()
        item = None if foreign else self.items[target]
        user = (
            item.user if item is not None and self.rng.random() < 0.8 else self.rng.choice(WRITERS)
        )
        same = item is not None and not item.deleted and self.rng.random() < 0.15
        body = f" {item.body} " if same else self.body()
        self.log.append(f"{user} edits {target} to {body!r}")
        await self.conns[user].send(type="edit", id=target, body=body)
        if item is None or item.deleted:
            await self.expect_error(user, "not_found")
        elif user != item.user:
            await self.expect_error(user, "forbidden")
        elif body.strip() == item.body:
            await self.expect_no_op(user)
        else:
            got = await self.expect_change("message.edited", target)
            assert got["body"] == body.strip() and got["edited"], got
            item.body, item.edited = body.strip(), True

    async def delete(self) -> None:
        foreign = self.rng.random() < 0.03
        target = self.foreign_id() if foreign else self.pick()
        item = None if foreign else self.items[target]
        user = (
            item.user if item is not None and self.rng.random() < 0.6 else self.rng.choice(WRITERS)
        )
        self.log.append(f"{user} deletes {target}")
        await self.conns[user].send(type="delete", id=target)
        if item is None or item.deleted:
            await self.expect_error(user, "not_found")
        elif user not in (item.user, WRITERS[0]):  # the author or the room's owner
            await self.expect_error(user, "forbidden")
        else:
            await self.expect_change("message.deleted", target)
            item.deleted, item.body, item.reactions = True, "", {}

    async def react(self) -> None:
        foreign = self.rng.random() < 0.02
        target = self.foreign_id() if foreign else self.pick()
        item = None if foreign else self.items[target]
        user = self.rng.choice(WRITERS)
        emoji = "x" if self.rng.random() < 0.02 else self.rng.choice(EMOJI)
        on = self.rng.random() < 0.65
        self.log.append(f"{user} reacts {emoji} {'on' if on else 'off'} {target}")
        await self.conns[user].send(type="react", id=target, emoji=emoji, on=on)
        if emoji == "x":
            await self.expect_error(user, "invalid_emoji")
        elif item is None or item.deleted:
            await self.expect_error(user, "not_found")
        elif on == (user in item.reactions.get(emoji, [])):
            await self.expect_no_op(user)
        else:
            if on:
                item.reactions.setdefault(emoji, []).append(user)
            else:
                item.reactions[emoji].remove(user)
                if not item.reactions[emoji]:
                    del item.reactions[emoji]
            got = await self.expect_change("reactions", target)
            assert got["reactions"] == item.stored()["reactions"], got

    def stored(self) -> dict[int, dict]:
        return {message_id: item.stored() for message_id, item in self.items.items()}


# ---------------------------------------------------------------------------------------------
# The property


def property_seed() -> int:
    seed = int(os.environ.get("CHAT_PROPERTY_SEED") or random.randrange(2**32))
    print(f"property seed: {seed} (CHAT_PROPERTY_SEED={seed} replays it)")
    return seed


async def watch_live(conn: Conn, view: View, through: int) -> None:
    """Apply live frames until ``view`` is current to ``through``; they come in seq order."""
    while view.last_seq < through:
        view.apply_live(await conn.next(SEQUENCED))


async def property_run(site: Site, seed: int, max_cases: int, budget: float, per_room: int):
    """Random cases until ``max_cases`` or ``budget`` seconds; returns (cases, counts)."""
    rng = random.Random(seed)
    deadline = time.monotonic() + budget
    shared: dict[str, Any] = {"client_ids": 0, "used": {}, "foreign_ids": []}
    cases, rooms, counts, catchups = 0, 0, {}, {"after": 0, "sync": 0, "pages": 0}
    while cases < max_cases and time.monotonic() < deadline:
        name = f"Property {seed} {rooms}"
        path = await asyncio.to_thread(room_create, site.sessions[WRITERS[0]], name)
        slug = path.strip("/").rsplit("/", 1)[-1]
        rooms += 1
        conns = {WRITERS[0]: await site.open(WRITERS[0], path, after=0)}
        await conns[WRITERS[0]].next({"synced"})
        # On several workers, the two writers on two of them.
        elsewhere = set(site.pids) - {conns[WRITERS[0]].pid}
        if elsewhere:
            conns[WRITERS[1]] = await site.open_on(WRITERS[1], path, elsewhere)
        else:
            conns[WRITERS[1]] = await site.open(WRITERS[1], path, after=0)
            await conns[WRITERS[1]].next({"synced"})
        driver = Driver(rng, conns, slug, shared)
        watcher_view = View()
        watcher = await site.open(WATCHER, path, after=0)
        await catch_up(watcher, watcher_view)
        try:
            for _ in range(per_room):
                if cases >= max_cases or time.monotonic() > deadline:
                    break
                where = f"seed={seed} room={slug} case={cases}"
                driver.log.append(f"--- {where}")
                # The watcher follows live for a while, then goes away.
                for _ in range(rng.randint(0, 4)):
                    await driver.step()
                await watch_live(watcher, watcher_view, driver.seq)
                await watcher.close()
                away_from = watcher_view.last_seq
                for _ in range(rng.randint(1, 12)):
                    await driver.step()
                # Back: catch up with ?after= on connect, or with a sync frame.
                if rng.random() < 0.5:
                    watcher = await site.open(WATCHER, path, after=away_from)
                    catchups["after"] += 1
                else:
                    watcher = await site.open(WATCHER, path)
                    await watcher.send(type="sync", after=away_from)
                    catchups["sync"] += 1
                synced = await catch_up(watcher, watcher_view)
                catchups["pages"] += synced["pages"]
                assert synced["last_seq"] == driver.seq, (where, synced)
                fresh_view = View()
                fresh = await site.open(rng.choice(USERS), path, after=0)
                await catch_up(fresh, fresh_view)
                await fresh.close()
                stored, last_seq = await asyncio.to_thread(stored_state, site, slug)
                assert last_seq == driver.seq, (where, last_seq, driver.seq)
                assert watcher_view.orphans == [], (where, "delta frames for unknown ids")
                assert fresh_view.orphans == [], (where, "delta frames for unknown ids")
                assert watcher_view.items == fresh_view.items, where
                assert watcher_view.as_stored() == stored, where
                assert driver.stored() == stored, where
                cases += 1
        except AssertionError as error:
            log = "\n".join(driver.log[-40:])
            server = "\n".join(
                line for line in site.log().splitlines()[-400:] if "HTTP/1.1" not in line
            )[-4000:]
            raise AssertionError(
                f"{error}\nlast changes (seed {seed}):\n{log}\nserver log:\n{server}"
            ) from error
        finally:
            for conn in (*conns.values(), watcher):
                await conn.close()
        shared["foreign_ids"] += list(driver.items)
        for kind, n in driver.counts.items():
            counts[kind] = counts.get(kind, 0) + n
    return cases, {**counts, **catchups, "rooms": rooms}


def signed_up(url: str) -> dict[str, httpx.Client]:
    return {user: signup(url, user) for user in USERS}


@contextlib.contextmanager
def sqlite_site(**env: str):
    """One uvicorn on SQLite, its users signed up."""
    with live_server(**FAST, **env) as server:
        site = Site(server.url, server.ws_url, sqlite_reader(server.env["SQLITE_PATH"]))
        site.sessions = signed_up(server.url)
        site.log = server.log
        yield site


@pytest.fixture(scope="module")
def single():
    """One uvicorn on SQLite."""
    with sqlite_site(CHAT_SERVED_BY_HEADER="1") as site:
        yield site


@pytest.fixture(scope="module")
def paged():
    """One uvicorn on SQLite whose catch-up answers at most 3 messages per page."""
    with sqlite_site(CHAT_SYNC_LIMIT="3") as site:
        yield site


@pytest.fixture(scope="module")
def cluster():
    """Two uvicorn workers on redis-server and PostgreSQL."""
    with (
        redis_server() as redis,
        postgres_server() as postgres,
        tempfile.TemporaryDirectory(prefix="chat-changes-") as tmp,
    ):
        env = node_env(redis_url=redis.url, database_url=postgres.url, **FAST)
        migrate(env)
        node = node_start(env, Path(tmp), "node", workers=2)
        try:
            pids = node.wait_for_workers()
            site = Site(node.url, node.ws_url, postgres_reader(postgres.port), pids=pids)
            site.sessions = signed_up(node.url)
            site.log = node.log
            yield site
        finally:
            node.stop()


def test_catch_up_equals_a_fresh_sync_and_the_database_on_one_worker(single):
    seed = property_seed()
    cases, counts = asyncio.run(property_run(single, seed, max_cases=180, budget=22, per_room=15))
    print(f"one worker: {cases} cases, {counts}")
    assert cases >= 40, (cases, counts)
    # The random sequences did exercise every kind of change and outcome.
    for kind in (*CHANGES, "error", "no-op", "retry"):
        assert counts.get(kind, 0) > 0, (kind, counts)


def test_catch_up_equals_a_fresh_sync_and_the_database_on_two_workers(cluster):
    seed = property_seed()
    cases, counts = asyncio.run(property_run(cluster, seed, max_cases=100, budget=16, per_room=12))
    print(f"two workers: {cases} cases, {counts}")
    assert cases >= 25, (cases, counts)


def test_catch_up_in_pages_equals_a_fresh_sync_and_the_database(paged):
    """With at most 3 messages per ``synced`` page, a catch-up takes many pages: a message
    created before a page's ``last_seq`` but changed after it must still reach the client."""
    seed = property_seed()
    cases, counts = asyncio.run(property_run(paged, seed, max_cases=80, budget=10, per_room=10))
    print(f"pages of 3: {cases} cases, {counts}")
    assert cases >= 20 and counts["pages"] > cases, (cases, counts)


def test_paged_catch_up_delivers_a_message_changed_after_the_page_boundary(paged):
    """The smallest case of the property above, spelled out: m1..m4, then a reaction on m1.

    Page 1 (after 0) holds the 3 messages whose latest change is lowest (m2, m3, m4; last_seq
    4, more); page 2 (after 4) must still give m1 whole, not only its reactions.
    """
    path = room_create(paged.sessions["amy"], "Pages boundary")

    async def scenario():
        amy = await paged.open("amy", path, after=0)
        await amy.next({"synced"})
        ids = []
        for i in range(4):
            await amy.send(type="message", body=f"m{i + 1}")
            ids.append((await amy.next({"message"}))["id"])
        await amy.send(type="react", id=ids[0], emoji="👍", on=True)
        assert (await amy.next({"reactions"}))["seq"] == 5
        await amy.close()
        view = View()
        fresh = await paged.open("zed", path, after=0)
        synced = await catch_up(fresh, view)
        await fresh.close()
        return ids, view, synced, [f for f in fresh.frames if f["type"] != "notification.unread"]

    ids, view, synced, frames = asyncio.run(scenario())
    assert synced["last_seq"] == 5 and synced["pages"] == 2, synced
    assert view.orphans == [], f"frames for a message never sent whole: {view.orphans}\n{frames}"
    assert sorted(view.items) == ids
    assert view.items[ids[0]]["body"] == "m1"
    assert view.items[ids[0]]["reactions"] == {"👍": ["amy"]}


# ---------------------------------------------------------------------------------------------
# Idempotent send across workers


async def sockets_on_two_workers(site: Site, user: str, path: str) -> tuple[Conn, Conn]:
    first = await site.open(user, path, after=0)
    await first.next({"synced"})
    second = await site.open_on(user, path, set(site.pids) - {first.pid})
    return first, second


def test_one_client_id_on_two_workers_at_once_and_after_a_reconnect_stores_one_message(cluster):
    path = room_create(cluster.sessions["amy"], "Idempotent across workers")
    slug = path.strip("/").rsplit("/", 1)[-1]
    rounds = 15

    def answers(conn: Conn, client_id: str) -> list[dict]:
        return [f for f in conn.frames if f["type"] == "message" and f["client_id"] == client_id]

    async def barrier(sender: Conn, others: list[Conn], tag: str) -> dict:
        """A message everyone must get: whatever came before it on the live path has come."""
        await sender.send(type="message", body=tag, client_id=tag)
        for conn in (sender, *others):
            assert await conn.wait(lambda conn=conn: answers(conn, tag), 10), tag
        await asyncio.sleep(0.3)  # and a moment for a stray copy from the other worker
        return answers(sender, tag)[0]

    async def scenario():
        a, b = await sockets_on_two_workers(cluster, "amy", path)
        assert a.pid != b.pid
        observer = await cluster.open("zed", path, after=0)
        await observer.next({"synced"})
        winners = []
        for r in range(rounds):
            client_id = f"twice-{r}"
            frame = json.dumps({"type": "message", "body": f"once {r}", "client_id": client_id})
            await asyncio.gather(a.ws.send(frame), b.ws.send(frame))
            # The storing socket gets the broadcast; the other the broadcast and the original.
            assert await a.wait(
                lambda client_id=client_id: len(answers(a, client_id) + answers(b, client_id)) >= 3,
                10,
            ), (client_id, answers(a, client_id), answers(b, client_id))
            winners.append(a.pid if len(answers(a, client_id)) == 1 else b.pid)
        await barrier(a, [b, observer], "barrier-1")

        # The same client_ids again from a new socket (any worker), with another body.
        await a.close()
        again = await cluster.open("amy", path, after=0)
        while (await again.next({"synced", "message"}))["type"] != "synced":
            pass
        replayed = len(again.frames)
        for r in range(0, rounds, 4):
            await again.send(type="message", body="changed my mind", client_id=f"twice-{r}")
        await barrier(again, [b, observer], "barrier-2")
        await asyncio.gather(b.close(), observer.close())
        fresh_view = View()
        fresh = await cluster.open("zed", path, after=0)
        await catch_up(fresh, fresh_view)
        await fresh.close()
        return a, b, observer, again, replayed, fresh, winners

    a, b, observer, again, replayed, fresh, winners = asyncio.run(scenario())
    print(f"stored by worker: {winners}")
    rows = cluster.sql(
        "SELECT m.client_id, m.id, m.seq, m.body FROM rooms_message m "
        "JOIN rooms_room r ON r.id = m.room_id WHERE r.slug = %s ORDER BY m.seq",
        (slug,),
    )
    [(last_seq,)] = cluster.sql("SELECT last_seq FROM rooms_room WHERE slug = %s", (slug,))
    expected_ids = [f"twice-{r}" for r in range(rounds)] + ["barrier-1", "barrier-2"]
    # One row per client_id, gapless seqs: the losing inserts rolled back their seq too.
    assert [row[0] for row in rows] == expected_ids, rows
    assert [row[2] for row in rows] == list(range(1, len(expected_ids) + 1)) and last_seq == len(
        rows
    ), (rows, last_seq)
    by_client_id = {client_id: (id_, seq, body) for client_id, id_, seq, body in rows}
    synced_messages = [f for f in fresh.frames if f["type"] == "message"]
    assert sorted(f["client_id"] for f in synced_messages) == sorted(expected_ids)

    for r in range(rounds):
        client_id = f"twice-{r}"
        stored = by_client_id[client_id]
        assert stored[2] == f"once {r}"
        got_a, got_b = len(answers(a, client_id)), len(answers(b, client_id))
        assert sorted((got_a, got_b)) == [1, 2], (client_id, got_a, got_b)
        assert len(answers(observer, client_id)) == 1, (client_id, answers(observer, client_id))
        every = answers(a, client_id) + answers(b, client_id) + answers(observer, client_id)
        every += answers(again, client_id) + answers(fresh, client_id)
        assert {(f["id"], f["seq"], f["body"]) for f in every} == {stored}, (client_id, every)
    # After the reconnect: the history once (replayed), then exactly the originals, to `again`
    # alone: neither b nor the observer saw a second broadcast.
    later = [f for f in again.frames[replayed:] if f["type"] == "message"]
    originals = [f["client_id"] for f in later if f["client_id"].startswith("twice-")]
    assert originals == [f"twice-{r}" for r in range(0, rounds, 4)], later


def test_one_client_id_in_two_rooms_at_once_is_stored_in_one_of_them(cluster):
    """The same key at the same instant in two rooms, from two workers: no room lock orders
    them, only the database's unique constraint. One is stored, the other refused, and the
    refused one leaves no gap in its room's seq."""
    paths = [room_create(cluster.sessions["amy"], f"Key room {i}") for i in range(2)]
    slugs = [path.strip("/").rsplit("/", 1)[-1] for path in paths]
    rounds = 15

    def outcome(conn: Conn, client_id: str) -> list[dict]:
        return [
            f
            for f in conn.frames
            if (f["type"] == "message" and f["client_id"] == client_id)
            or (f["type"] == "error" and f["code"] == "invalid_client_id")
        ]

    async def scenario():
        first = await cluster.open("amy", paths[0], after=0)
        await first.next({"synced"})
        second = await cluster.open_on("amy", paths[1], set(cluster.pids) - {first.pid})
        results = []
        for r in range(rounds):
            client_id = f"two-rooms-{r}"
            frame = json.dumps(
                {"type": "message", "body": f"one of two {r}", "client_id": client_id}
            )
            errors_before = [len(outcome(c, "-")) for c in (first, second)]  # errors so far
            await asyncio.gather(first.ws.send(frame), second.ws.send(frame))
            for conn, before in zip((first, second), errors_before, strict=True):
                assert await conn.wait(
                    lambda conn=conn, before=before, client_id=client_id: (
                        len(outcome(conn, client_id)) > before
                    ),
                    10,
                ), (client_id, conn.frames[-3:])
            results.append(tuple(outcome(c, client_id)[-1]["type"] for c in (first, second)))
        await first.close()
        await second.close()
        return results

    results = asyncio.run(scenario())
    assert all(sorted(r) == ["error", "message"] for r in results), results
    print(f"stored in room: {[r.index('message') for r in results]}")
    for r, result in enumerate(results):
        rows = cluster.sql(
            "SELECT r.slug FROM rooms_message m JOIN rooms_room r ON r.id = m.room_id "
            "WHERE m.client_id = %s",
            (f"two-rooms-{r}",),
        )
        assert rows == [(slugs[result.index("message")],)], (r, rows)
    for slug in slugs:
        [(last_seq, count)] = cluster.sql(
            "SELECT r.last_seq, COUNT(m.id) FROM rooms_room r "
            "LEFT JOIN rooms_message m ON m.room_id = r.id WHERE r.slug = %s GROUP BY r.last_seq",
            (slug,),
        )
        assert last_seq == count, (slug, last_seq, count)


# ---------------------------------------------------------------------------------------------
# Live order across workers


def test_live_frames_of_every_kind_from_two_workers_arrive_in_seq_order_once(cluster):
    path = room_create(cluster.sessions["amy"], "Live order across workers")
    per_writer = 20

    async def write(conn: Conn, name: str) -> int:
        """Post, edit, react, unreact, delete as fast as the socket takes them; returns how
        many changes were made."""
        made = 0
        for i in range(per_writer):
            client_id = f"{name}-{i}"
            await conn.send(type="message", body=f"{name} {i}", client_id=client_id)
            echo = await conn.next({"message"})
            while echo["client_id"] != client_id:
                echo = await conn.next({"message"})
            await conn.send(type="edit", id=echo["id"], body=f"{name} {i} (edited)")
            await conn.send(type="react", id=echo["id"], emoji=EMOJI[i % len(EMOJI)], on=True)
            made += 3
            if i % 3 == 0:
                await conn.send(type="react", id=echo["id"], emoji=EMOJI[i % len(EMOJI)], on=False)
                made += 1
            if i % 4 == 0:
                await conn.send(type="delete", id=echo["id"])
                made += 1
        return made

    async def scenario():
        pids = set(cluster.pids)
        amy = await cluster.open("amy", path, after=0)
        await amy.next({"synced"})
        zed = await cluster.open_on("zed", path, pids - {amy.pid})
        observers = [await cluster.open("wes", path, after=0) for _ in range(2)]
        for pid in pids:
            observers.append(await cluster.open_on("wes", path, {pid}))
        everyone = [amy, zed, *observers]
        # A worker orders a room's frames from the first one it sees (docs/scaling.md).
        await amy.send(type="message", body="first")
        for conn in everyone:
            assert await conn.wait(lambda conn=conn: len(conn.changes()) >= 1, 10)
        made = await asyncio.gather(write(amy, "amy"), write(zed, "zed"))
        total = 1 + sum(made)
        for conn in everyone:
            assert await conn.wait(lambda conn=conn: len(conn.changes()) >= total, 20), (
                conn.pid,
                len(conn.changes()),
                total,
            )
        await asyncio.sleep(0.3)  # a duplicate or a late frame would come now
        for conn in everyone:
            await conn.close()
        return everyone, total

    everyone, total = asyncio.run(scenario())
    assert {conn.pid for conn in everyone} == set(cluster.pids)
    reference = [(f["type"], f["seq"]) for f in everyone[0].changes()]
    assert [seq for _, seq in reference] == list(range(1, total + 1)), reference
    for conn in everyone:
        got = [(f["type"], f["seq"]) for f in conn.changes()]
        assert got == reference, f"socket on {conn.pid}: {got}"
        unasked = [f for f in conn.frames if f["type"] in ("synced", "error")]
        assert len(unasked) <= 1 and all(f["type"] == "synced" for f in unasked), unasked
    kinds = {kind for kind, _ in reference}
    assert kinds == set(CHANGES), kinds
    [(last_seq,)] = cluster.sql(
        "SELECT last_seq FROM rooms_room WHERE slug = %s", (path.strip("/").rsplit("/", 1)[-1],)
    )
    assert last_seq == total
