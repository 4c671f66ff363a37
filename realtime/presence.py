"""Who is online: each worker counts its own sockets per user and shares them with expiry.

Online means at least one open socket of the user anywhere in the deployment. A worker keeps
the count of its sockets per user; once a second (``TICK``) its ticker writes what changed to
the worker's own entry in the store, reads the online users of every live worker, and, for each
room with sockets here, computes the room's online members: a ``presence`` frame, serialised
once, goes to the room's local sockets when that list changed. The work is per room per second
per worker, never per socket event, so a busy room costs one frame a second whatever its churn.

Stores (``realtime.presence_stores``): in the process on the embedded default; on Redis
(``REDIS_URL``) a hash per worker (user id → username) whose key expires, and a sorted set of
live workers scored by the time their entries go stale. Each worker renews both every
``CHAT_PRESENCE_REFRESH`` seconds; a worker killed with SIGKILL stops renewing, so its users
drop out after at most ``CHAT_PRESENCE_EXPIRY`` seconds while their sockets on other workers
keep them online.
"""

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from channels.db import DatabaseSyncToAsync
from django.conf import settings

from .events import frame_dumps
from .loops import per_loop
from .presence_stores import store_create

logger = logging.getLogger(__name__)

# At most one presence frame per room per second, and the ticker's period.
TICK = 1.0
# How long an early write (a user came online here) waits for others of the same burst.
SYNC_GATHER = 0.05
# Room membership (who may appear in a room's list) is read again at least this often, even when
# nobody came or went: someone added to a private room while online shows up by then.
MEMBERS_EVERY = 10.0
# Online users are looked up in the database this many at a time (one JSON or array parameter
# per statement: rooms.selectors.room_members_among), so no statement grows without bound.
QUERY_CHUNK = 5000


class Subscriber(Protocol):
    def deliver_frame(self, frame: str, seq: int | None) -> None: ...


def _members_online(room_ids: list[int], user_ids: list[int]) -> dict[int, set[int]]:
    """Which of ``user_ids`` are members of each of ``room_ids``."""
    from rooms.selectors import room_members_among

    return room_members_among(room_ids=room_ids, user_ids=user_ids, chunk=QUERY_CHUNK)


# On a thread of its own, not the database thread that stores messages: a presence query must
# never hold a message back. One thread, so one database connection per process.
_members_online_async = DatabaseSyncToAsync(
    _members_online,
    thread_sensitive=False,
    executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="presence"),
)


class RoomView:
    """One room as this worker sees it: its local sockets and the last list they got."""

    __slots__ = ("count", "frame", "members", "sent_at", "slug", "sockets", "visitors")

    def __init__(self, slug: str) -> None:
        self.slug = slug
        self.sockets: set[Subscriber] = set()
        self.visitors: dict[int, int] = {}  # user id → sockets of theirs here (they may read it)
        self.members: set[int] = set()  # online users who are members, as last read
        self.frame: str | None = None
        self.count = 0
        self.sent_at = -math.inf


class Presence:
    """The presence bookkeeping of one event loop (one worker process)."""

    def __init__(self) -> None:
        self.store = store_create()
        self.sockets: dict[int, int] = {}  # user id → open sockets here
        self.local: dict[int, str] = {}  # user id → username, for users with a socket here
        self.added: dict[int, str] = {}
        self.removed: set[int] = set()
        self.rooms: dict[int, RoomView] = {}
        self.pending: set[int] = set()  # rooms whose new list waits for its second to pass
        self.online: dict[int, str] = {}
        self.online_key: Any = object()
        # dirty: a list here may have changed (read again); bump: the other workers must read
        # again too (written with the next sync); compute_now: a room has a listener and no list.
        self.dirty = self.bump = True
        self.compute_now = False
        self.members_read = -math.inf
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.ticks = 0  # for tests
        self.failing = False

    def _start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="presence")

    def user_open(self, user_id: int, username: str) -> None:
        """A socket of this user opened here."""
        self._start()
        count = self.sockets.get(user_id, 0)
        self.sockets[user_id] = count + 1
        if count == 0:
            self.local[user_id] = username
            self.removed.discard(user_id)
            self.added[user_id] = username
            self.dirty = self.bump = True
            self.wake.set()

    def user_close(self, user_id: int) -> None:
        """A socket of this user closed here; they stay online while any other is open."""
        count = self.sockets.get(user_id, 0) - 1
        if count > 0:
            self.sockets[user_id] = count
            return
        self.sockets.pop(user_id, None)
        if self.local.pop(user_id, None) is not None:
            self.added.pop(user_id, None)
            self.removed.add(user_id)
            self.dirty = self.bump = True

    def room_enter(
        self, room_id: int, slug: str, user_id: int, subscriber: Subscriber | None
    ) -> None:
        """A socket of ``user_id`` joined a room; a ``subscriber`` gets the room's list now and
        every change of it (a socket that did not ask for presence passes None)."""
        self._start()
        view = self.rooms.get(room_id)
        if view is None:
            view = self.rooms[room_id] = RoomView(slug)
        view.visitors[user_id] = view.visitors.get(user_id, 0) + 1
        self.dirty = self.bump = True
        if subscriber is None:
            return
        view.sockets.add(subscriber)
        if view.frame is not None:
            subscriber.deliver_frame(view.frame, None)
        else:
            self.compute_now = True  # the room's first listener here: compute its list at once
            self.wake.set()

    def room_leave(self, room_id: int, user_id: int, subscriber: Subscriber | None) -> None:
        """A socket left a room."""
        view = self.rooms.get(room_id)
        if view is None:
            return
        if subscriber is not None:
            view.sockets.discard(subscriber)
        left = view.visitors.get(user_id, 0) - 1
        if left > 0:
            view.visitors[user_id] = left
        else:
            view.visitors.pop(user_id, None)
        if not view.visitors:
            del self.rooms[room_id]
        self.dirty = self.bump = True

    def room_changed(self, room_id: int) -> None:
        """The room's membership changed (a member left or was removed): read it again."""
        if room_id in self.rooms:
            self.dirty = self.bump = True

    def room_online_count(self, room_id: int) -> int:
        """How many members of the room were online at the last tick."""
        view = self.rooms.get(room_id)
        return view.count if view is not None else 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        computed = -math.inf
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, computed + TICK - loop.time()))
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                if self.compute_now or loop.time() - computed >= TICK:
                    computed = loop.time()
                    self.compute_now = False
                    await self.tick()
                else:
                    # A user came online here: tell the other workers at once (a burst of
                    # arrivals shares one write), so a tab opened elsewhere a moment before
                    # another closes here keeps them online throughout.
                    await asyncio.sleep(SYNC_GATHER)
                    await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis or the database is unavailable: lists stay as they were until it is
                # back. Said once per outage, not once a second.
                if not self.failing:
                    logger.warning("presence: tick failed; retrying every second", exc_info=True)
                self.failing = True
                await asyncio.sleep(TICK)
            else:
                if self.failing:
                    logger.warning("presence: ticks work again")
                self.failing = False

    async def _sync(self) -> None:
        added, removed = self.added, self.removed
        self.added, self.removed = {}, set()
        bump, self.bump = self.bump, False
        try:
            await self.store.sync(self.local, added, removed, bump)
        except Exception:
            self.added = {**added, **self.added}
            self.removed |= removed - set(self.added)
            self.bump = True
            raise

    async def tick(self) -> None:
        """Share this worker's changes, read everyone's, and send the lists that changed."""
        self.ticks += 1
        reread, self.dirty = self.dirty, False
        await self._sync()
        key, online = await self.store.online(self.local)
        now = time.monotonic()
        if key != self.online_key or reread or now - self.members_read >= MEMBERS_EVERY:
            self.online_key, self.online = key, online
            try:
                await self._members_read(now)
            except Exception:
                self.dirty = True
                raise
            self._send(now, list(self.rooms))
        elif self.pending:
            # Nothing new, but some lists changed less than a second after their last frame.
            self._send(now, list(self.pending))

    async def _members_read(self, now: float) -> None:
        if not self.rooms:
            return
        room_ids = list(self.rooms)
        members = await _members_online_async(room_ids, list(self.online))
        self.members_read = now
        for room_id in room_ids:
            view = self.rooms.get(room_id)
            if view is not None:
                view.members = members.get(room_id, set())

    def _send(self, now: float, room_ids: list[int]) -> None:
        for room_id in room_ids:
            self.pending.discard(room_id)
            view = self.rooms.get(room_id)
            if view is None:
                continue
            users = view.members.union(view.visitors)
            # A visitor is online by definition (their socket is here), even before the store
            # has their entry.
            names = sorted(name for u in users if (name := self.online.get(u) or self.local.get(u)))
            view.count = len(names)
            payload: dict[str, Any] = {"type": "presence", "room": view.slug}
            payload["online"] = names[: settings.CHAT_PRESENCE_LIST_MAX]
            payload["count"] = len(names)
            if not view.sockets:
                view.frame = None  # counted for the typing rule; nobody here listens
                continue
            frame = frame_dumps(payload)
            if frame == view.frame:
                continue
            if now - view.sent_at < TICK * 0.95:
                self.pending.add(room_id)  # sent less than a second ago: the next tick sends it
                continue
            view.frame, view.sent_at = frame, now
            for subscriber in tuple(view.sockets):
                try:
                    subscriber.deliver_frame(frame, None)
                except Exception:
                    logger.exception("presence delivery failed")


# The presence of the running event loop (one per worker process; one per test loop).
get_presence = per_loop(Presence)
