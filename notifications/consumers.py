"""Receiving notifications on a socket: a mixin for any page's socket, and ``/ws/notifications/``.

Each socket keeps its user's unread count, loaded once at connect, and adds one for each new
notification it is handed, so a broadcast to every connected user costs no query per socket.
"""

import asyncio
from typing import Any

from realtime.consumers import HubConsumer
from realtime.db import reads_sync_to_async
from realtime.events import EVERYONE_GROUP, frame_dumps
from rooms.sidebar import SidebarMixin

from . import events, selectors

# Ids of notifications counted live since the last snapshot (connect or mark-read); past this
# many the socket folds them into ``through``, so a long-lived socket's memory stays bounded.
RECENT_LIMIT = 1000
NO_IDS: frozenset[int] = frozenset()  # every socket's unread_recent until one comes


@reads_sync_to_async
def _unread_snapshot(user_id: int) -> tuple[int, int]:
    return selectors.unread_snapshot(user_id=user_id)


class NotificationsMixin:
    """Adds a user's notifications to a ``HubConsumer``: call ``notifications_join`` on connect.

    The unread count is right across the race between joining and loading it: ``through`` is
    the highest notification id the loaded count includes, events that arrive while it loads
    wait, and a notification id at or below ``through`` is never counted twice.
    """

    unread: int
    unread_through: int
    unread_recent: frozenset[int] | set[int]
    notifications_waiting: list[dict[str, Any]] | None
    notifications_joined: bool
    resnapshot_scheduled = False  # rare: not in ``socket_state``
    snapshots_loading: int
    # Set on every socket by ``HubConsumer.__init__``, in this order (see there why).
    socket_state: dict[str, Any] = {
        "unread": 0,
        "unread_through": 0,
        "unread_recent": NO_IDS,
        "notifications_waiting": None,
        "notifications_joined": False,
        "snapshots_loading": 0,
    }

    async def notifications_join(self) -> None:
        """Receive this user's notifications and load the unread count."""
        await self.notifications_subscribe()
        await self.notifications_snapshot()

    async def notifications_subscribe(self, check_session: bool = True) -> None:
        """Receive this user's notifications from now on; they wait until a count is loaded
        (``notifications_snapshot``, or ``notifications_loaded`` with one loaded by the caller
        after this)."""
        self.unread = 0
        self.unread_through = 0
        # One shared empty frozenset until a notification comes: most sockets never get one,
        # and an empty set is 216 bytes on each of them (S3). ``frozenset()`` is a new object
        # each time (CPython keeps no empty-frozenset singleton since 3.10).
        self.unread_recent = NO_IDS
        self.notifications_waiting = []
        self.notifications_joined = True
        await self.join_user(check=check_session)
        await self.join(EVERYONE_GROUP)

    async def notifications_snapshot(self) -> None:
        """(Re)load the unread count, then handle what arrived meanwhile."""
        if self.notifications_waiting is None:
            self.notifications_waiting = []
        self.snapshots_loading += 1
        try:
            unread, through = await _unread_snapshot(self.user.pk)
        finally:
            self.snapshots_loading -= 1
        if self.snapshots_loading:
            return  # a later load (e.g. a resync during connect) is newer and finishes this
        self.notifications_loaded(unread, through)

    def notifications_loaded(self, unread: int, through: int) -> None:
        """Take a count loaded after subscribing, then handle what arrived meanwhile."""
        if self.snapshots_loading:
            return  # a reload (a resync) is under way, newer than this count: it finishes
        self._unread_set(unread, through)
        waiting, self.notifications_waiting = self.notifications_waiting, None
        for payload in waiting:
            if payload.get("type") == events.READ:
                # Read before the count was loaded, so already in it: only pass the news on.
                self.enqueue(self._read_frame(payload))
            else:
                self.deliver_event(payload)

    def _unread_set(self, unread: int, through: int) -> None:
        self.unread_recent = {i for i in self.unread_recent if i > through} or NO_IDS
        self.unread = unread + len(self.unread_recent)
        self.unread_through = max(through, 0)

    def _read_frame(self, payload: dict[str, Any]) -> str:
        return frame_dumps({"type": events.READ, "ids": payload["ids"], "unread": self.unread})

    def unread_frame(self) -> str:
        """The frame that tells a client its user's unread count."""
        return frame_dumps({"type": events.UNREAD, "unread": self.unread})

    def deliver_event(self, payload: dict[str, Any]) -> None:
        """Render a notification event for this socket's user (called by the hub)."""
        kind = payload.get("type")
        if kind == events.NOTIFICATION:
            user_max = payload.get("user_max")
            if user_max is not None and self.user.pk > user_max:
                return  # signed up after an "everyone" send went out: not a recipient
            if self.notifications_waiting is not None:
                self.notifications_waiting.append(payload)
                return
            notification_id = payload["id"]
            if notification_id > self.unread_through and notification_id not in self.unread_recent:
                if len(self.unread_recent) >= RECENT_LIMIT:
                    # Keep the set bounded: the count already includes these ids, and raising
                    # ``through`` past them means none of them is ever counted again.
                    self.unread_through = max(self.unread_recent)
                    self.unread_recent = NO_IDS
                if not isinstance(self.unread_recent, set):
                    self.unread_recent = set()
                self.unread_recent.add(notification_id)
                self.unread += 1
            self.enqueue(events.notification_frame(payload["head"], self.unread))
        elif kind == events.READ:
            if self.notifications_waiting is not None:
                self.notifications_waiting.append(payload)
                return
            self._unread_set(payload["unread"], payload["through"])
            self.enqueue(self._read_frame(payload))
        else:
            super().deliver_event(payload)  # type: ignore[misc]

    async def _resnapshot(self) -> None:
        self.resnapshot_scheduled = False
        await self.notifications_snapshot()
        self.enqueue(self.unread_frame())

    def resync(self) -> None:
        """After lost hub events, reload the count and tell the client."""
        super().resync()  # type: ignore[misc]
        # Called once per group the hub lost events of: calls before the reload starts share it.
        if self.notifications_joined and not self.closing and not self.resnapshot_scheduled:
            self.resnapshot_scheduled = True
            asyncio.get_running_loop().create_task(self._resnapshot())


class NotificationConsumer(SidebarMixin, NotificationsMixin, HubConsumer):
    """``/ws/notifications/``: the socket of pages that have no room socket.

    Server → client only: ``notification.unread`` on connect, then ``notification`` and
    ``notification.read`` frames (docs/notifications.md).
    """

    async def connect(self) -> None:
        """Called when the socket opens: check the user, join, send the unread count."""
        if not await self.accept_user():
            return
        await self.notifications_join()
        # Awaited here (the room socket loads it in the background): the unread frame below
        # tells the page its sidebar counts are loaded too.
        await self.sidebar_join()
        # Queued behind anything already delivered, so the client's count ends up current.
        self.enqueue(self.unread_frame())
        self.start_writer()
