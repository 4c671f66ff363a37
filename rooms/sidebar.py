"""The live sidebar on every page's socket: unread counts and activity order of the user's rooms.

A socket holds one ``RoomWatch`` per room of its user, subscribed to that room's group in the
process hub (``realtime.hub``), beside the room pages' sockets. A new message therefore costs
what it costs anyway: one event per worker process, then one small frame per open tab of each
member, with no query and no per-member send (docs/protocol.md, "Sidebar"). The hub hands the
same frame string to every subscriber, so each frame is parsed once per process
(``_frame_facts``).

Counting is exact across the race between loading a count and live frames: a count is loaded
with the room seq it is current to (``through``); a live message at or below it is already in
it, and one above it is added once (``RoomWatch.reset``).
"""

import asyncio
import functools
import logging
from typing import Any

import orjson

from realtime.db import reads_sync_to_async
from realtime.events import frame_dumps, room_group
from realtime.hub import get_hub
from realtime.loops import per_loop

from . import events, selectors

logger = logging.getLogger(__name__)

# Live-counted seqs a watch remembers until the next count it loads; past this the oldest are
# forgotten (still counted), so a tab left open on a busy room keeps bounded memory.
LIVE_LIMIT = 1000


@functools.lru_cache(maxsize=1024)
def _frame_facts(frame: str) -> tuple[str | None, str | None]:
    """``(type, author)`` of a serialised room frame. Cached by the string, whose hash Python
    keeps on the object: every socket of a process looks the same object up for free."""
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None, None
    return data.get("type"), data.get("user")


# Sidebar loads (two queries each) in flight per process. After a restart thousands of sockets
# connect at once; unbounded, their loads filled the database thread's queue ahead of the next
# sockets' catch-ups and kept the process from stopping (S5, docs/performance.md). The rest wait
# here, on the event loop, costing nothing, and get their counts a moment later.
SIDEBAR_LOADS = 2
_load_gate = per_loop(lambda: asyncio.Semaphore(SIDEBAR_LOADS))


@reads_sync_to_async
def _counts(user: Any) -> list[tuple[int, str, int, int]]:
    return selectors.conversations_unread(user=user)


@reads_sync_to_async
def _rooms(user: Any) -> list[tuple[int, str]]:
    return selectors.conversations_ids(user=user)


@reads_sync_to_async
def _count(user: Any, room_id: int) -> tuple[int, int] | None:
    return selectors.room_unread(user=user, room_id=room_id)


@reads_sync_to_async
def _entry(user: Any, slug: str) -> tuple[int, str, int, int] | None:
    return next(iter(selectors.conversations_unread(user=user, slug=slug)), None)


class RoomWatch:
    """One socket's view of one of its user's rooms: a hub subscriber of the room's group."""

    __slots__ = (
        "live",
        "me",
        "owner",
        "quiet",
        "recounting",
        "room_id",
        "slug",
        "through",
        "unread",
    )

    def __init__(self, owner: "SidebarMixin", room_id: int, slug: str) -> None:
        self.owner = owner
        # The owner's username, compared with each message's author: read once, not per frame
        # (a busy room's watches did it 40,000 times a second in bench P1).
        self.me = owner.username
        self.room_id = room_id
        self.slug = slug
        # The room socket's own room: the page has its frames already (message, 4403), so the
        # watch only keeps the count that ``read`` frames carry, and is no hub subscriber
        # (``SidebarMixin.sidebar_watch_room``).
        room = getattr(owner, "room", None)
        self.quiet = room is not None and room.pk == room_id
        self.unread = 0
        self.through = 0
        self.live: list[int] = []
        self.recounting = False

    def reset(self, unread: int, through: int) -> None:
        """Take a loaded count, current to room seq ``through``, plus what came live after it."""
        self.live = [seq for seq in self.live if seq > through]
        self.unread = unread + len(self.live)
        self.through = max(self.through, through)

    def deliver_frame(self, frame: str, seq: int | None) -> None:
        """A change in the room (called by the hub)."""
        if seq is None or seq <= self.through:
            return
        kind, author = _frame_facts(frame)
        if kind == "message":
            if author != self.me:
                self.live.append(seq)
                del self.live[:-LIVE_LIMIT]
                self.unread += 1
            if self.quiet:
                return
            self.owner.sidebar_send(
                {"type": "room.activity", "room": self.slug, "seq": seq, "unread": self.unread}
            )
        elif kind == "message.deleted" and self.unread and not self.recounting:
            # The deleted message may have been an unread one: count again (deletions are rare).
            self.recounting = True
            asyncio.get_running_loop().create_task(self.owner.sidebar_recount(self))

    def deliver_event(self, payload: dict[str, Any]) -> None:
        """Room groups carry no per-user events."""

    def resync(self) -> None:
        """The hub lost events: load every count again."""
        self.owner.sidebar_resync()

    def revoke(self, user_id: int) -> None:
        """The user left or was removed: drop the room from the sidebar."""
        if user_id == self.owner.user.pk and not self.quiet:
            self.owner.sidebar_drop(self)


class SidebarMixin:
    """Adds the live sidebar to a ``HubConsumer``: call ``sidebar_join`` once connected."""

    watches: dict[str, RoomWatch] | None
    sidebar_resync_scheduled = False  # rare: not in ``socket_state``
    sidebar_task: "asyncio.Task[None] | None"
    # Set on every socket by ``HubConsumer.__init__``, in this order (see there why).
    socket_state: dict[str, Any] = {
        "watches": None,
        "sidebar_task": None,
    }

    @property
    def username(self) -> str:
        return self.user.get_username()

    async def sidebar_join(self) -> None:
        """Watch every room of the user: load the rooms, subscribe, then load their counts.

        Loading after subscribing leaves no window in which a message is missed; ``reset``
        keeps one seen both ways from counting twice.
        """
        self.watches = {}
        async with _load_gate():
            if self.watches is None:
                return  # released while waiting for its turn
            rows = await _rooms(self.user)
            if self.watches is None:
                return
            watches = [RoomWatch(self, room_id, slug) for room_id, slug in rows]
            self.watches.update((w.slug, w) for w in watches)
            await self._watch_and_count(watches)

    async def _watch_and_count(self, watches: list[RoomWatch]) -> list[RoomWatch]:
        """Subscribe ``watches`` (already in ``self.watches``), then load every count; returns
        the watches whose count changed (none if the socket was released meanwhile)."""
        await self._subscribe(watches)
        if self.watches is None:
            # Released while subscribing, possibly before the hub had them: leave again.
            await get_hub().unsubscribe_pairs([(room_group(w.room_id), w) for w in watches])
            return []
        return await self._sidebar_load()

    def sidebar_watch_room(self, room: Any) -> None:
        """Keep the count of the socket's own room, loaded by the connect's database call
        (``sidebar_loaded``): the room socket's one-call connect.

        This watch is no hub subscriber: the room socket gets every frame of its room itself,
        and the count of its own room is only told in ``read`` frames, which check it against
        the highest seq the socket has seen (``deliver_event``). A busy room's messages then
        cost its sockets one delivery each, not two (bench P1, docs/performance.md).
        """
        self.watches = {room.slug: RoomWatch(self, room.pk, room.slug)}

    def sidebar_loaded(self, rows: list[tuple[int, str, int, int]]) -> None:
        """Take the counts the connect loaded after ``sidebar_watch_room``.

        The own room's count is exact (the socket joined the room before the load). The other
        rooms were not watched yet, so a message between the load and their subscription would
        be in neither: they are subscribed now and counted again, in a task of their own and
        at most ``SIDEBAR_LOADS`` at once, as ``sidebar_join`` does. A user whose only room is
        this one (most sockets of a reconnect storm) costs no second load.
        """
        if self.watches is None:
            return  # released meanwhile
        listed = {slug for _, slug, _, _ in rows}
        for slug, watch in list(self.watches.items()):
            if slug not in listed and watch.quiet:
                # Not a member (a public room read without joining): nothing to keep count of.
                del self.watches[slug]
        others = []
        for room_id, slug, unread, through in rows:
            watch = self.watches.get(slug)
            if watch is None:
                watch = self.watches[slug] = RoomWatch(self, room_id, slug)
                others.append(watch)
            watch.reset(unread, through)
        if others:
            self.sidebar_task = asyncio.get_running_loop().create_task(self._sidebar_others(others))

    async def _sidebar_others(self, watches: list[RoomWatch]) -> None:
        try:
            async with _load_gate():
                if self.watches is None:
                    return
                for watch in await self._watch_and_count(watches):
                    self.sidebar_send(
                        {"type": "room.unread", "room": watch.slug, "unread": watch.unread}
                    )
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("loading a socket's sidebar failed")
        finally:
            self.sidebar_task = None

    async def _subscribe(self, watches: list[RoomWatch]) -> None:
        hub = get_hub()
        if len(watches) == 1:  # every connect's own room: no tasks for a gather of one
            await hub.subscribe(room_group(watches[0].room_id), watches[0])
            return
        await asyncio.gather(*(hub.subscribe(room_group(w.room_id), w) for w in watches))

    async def _sidebar_load(self) -> list[RoomWatch]:
        changed = []
        for _, slug, unread, through in await _counts(self.user):
            watch = (self.watches or {}).get(slug)
            if watch is not None:
                before = watch.unread
                watch.reset(unread, through)
                if watch.unread != before:
                    changed.append(watch)
        return changed

    def sidebar_send(self, payload: dict[str, Any]) -> None:
        self.enqueue(frame_dumps(payload))  # type: ignore[attr-defined]

    async def sidebar_recount(self, watch: RoomWatch) -> None:
        try:
            loaded = await _count(self.user, watch.room_id)
        finally:
            watch.recounting = False
        if loaded is not None and not self.closing:  # type: ignore[attr-defined]
            before = watch.unread
            watch.reset(*loaded)
            if watch.quiet and watch.unread == before:
                return  # the own room's count, already told in its read frame
            self.sidebar_send({"type": "room.unread", "room": watch.slug, "unread": watch.unread})

    def sidebar_resync(self) -> None:
        if self.watches is None or self.sidebar_resync_scheduled:
            return
        self.sidebar_resync_scheduled = True
        asyncio.get_running_loop().create_task(self._sidebar_resync())

    async def _sidebar_resync(self) -> None:
        self.sidebar_resync_scheduled = False
        for watch in await self._sidebar_load():
            self.sidebar_send({"type": "room.unread", "room": watch.slug, "unread": watch.unread})

    def sidebar_drop(self, watch: RoomWatch, announce: bool = True) -> None:
        if self.watches is None or self.watches.get(watch.slug) is not watch:
            return
        del self.watches[watch.slug]
        asyncio.get_running_loop().create_task(
            get_hub().unsubscribe(room_group(watch.room_id), watch)
        )
        if announce:
            self.sidebar_send({"type": events.ROOM_REMOVED, "room": watch.slug})

    async def _sidebar_add(self, slug: str) -> None:
        row = await _entry(self.user, slug)
        if row is None or self.watches is None or slug in self.watches:
            return
        watch = self.watches[slug] = RoomWatch(self, row[0], slug)
        await self._subscribe([watch])
        loaded = await _count(self.user, watch.room_id)
        if loaded is not None:
            watch.reset(*loaded)

    def deliver_event(self, payload: dict[str, Any]) -> None:
        """Per-user events: a read marker moved, a room added or left (called by the hub)."""
        kind = payload.get("type")
        if kind == events.ROOM_READ and self.watches is not None:
            watch = self.watches.get(payload.get("room", ""))
            if watch is None:
                return
            stale = payload["through"] < watch.through
            if watch.quiet:
                # The own room's watch sees no live frames: changes after the count's seq,
                # which this socket has seen, are in it only after a recount.
                stale = stale or self.last_seq > payload["through"]  # type: ignore[attr-defined]
            watch.reset(payload["unread"], payload["through"])
            frame = {k: payload[k] for k in ("type", "room", "seq")}
            self.sidebar_send({**frame, "unread": watch.unread})
            if stale and not watch.recounting:
                # Counted before a newer load of ours: messages between the two are in neither
                # the count nor the live list, so count again.
                watch.recounting = True
                asyncio.get_running_loop().create_task(self.sidebar_recount(watch))
            return
        if kind == events.ROOM_REMOVED and self.watches is not None:
            watch = self.watches.get(payload.get("room", ""))
            if watch is not None:
                self.sidebar_drop(watch, announce=False)  # the payload itself is the frame
        if kind == events.MEMBER_ADDED and self.watches is not None:
            slug = (payload.get("room") or {}).get("slug")
            if isinstance(slug, str):
                asyncio.get_running_loop().create_task(self._sidebar_add(slug))
        super().deliver_event(payload)  # type: ignore[misc]

    async def release(self) -> None:
        """However the socket ended (closed, failed, cancelled): stop watching the rooms, out of
        the local fan-out before anything awaits."""
        watches, self.watches = self.watches, None
        if self.sidebar_task is not None and self.sidebar_task is not asyncio.current_task():
            self.sidebar_task.cancel()
        pairs = [(room_group(w.room_id), w) for w in (watches or {}).values() if not w.quiet]
        try:
            await get_hub().unsubscribe_pairs(pairs)
        finally:
            await super().release()  # type: ignore[misc]
