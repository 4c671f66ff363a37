"""The one module that sends real-time events: every ``group_send`` of the project is here.

Events are sent after the surrounding transaction commits, so no socket ever hears of a row that
was rolled back. Each event carries the frame already serialised once, and goes to a group whose
members are worker processes (see ``realtime.hub``), not individual sockets.
"""

import asyncio
import contextvars
import logging
import os
import weakref
from collections.abc import Iterable, Iterator
from itertools import groupby, islice
from operator import itemgetter
from typing import Any

import orjson
from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .hub import get_hub

logger = logging.getLogger(__name__)


def room_group(room_id: int) -> str:
    """Name of the group of a room's sockets."""
    return f"room-{room_id}"


def user_group(user_id: int) -> str:
    """Name of the group of one user's sockets."""
    return f"user-{user_id}"


EVERYONE_GROUP = "everyone"
# Events per batch of a process's publisher (realtime.layers.RedisChannelLayer.group_send_many).
PUBLISH_BATCH = 200


def frame_dumps(payload: dict[str, Any]) -> str:
    """Serialise a frame for the wire."""
    return orjson.dumps(payload).decode()


class _Publisher:
    """Passes one event loop's events on in the order they were committed.

    This process's own sockets get each event at once, from its hub (``Hub.dispatch_ordered``,
    the same ordered path as events from other processes), and the layer takes it to every
    other member of the group, leaving this hub out: a worker's own sockets wait for no round
    trip through Redis, and its hub reads only other processes' events. A layer that cannot
    leave a member out (``_leaves_out``: channels_redis' pub/sub layer, or the Redis layer over
    several hosts) delivers every event, this process's included, as the layer sends it.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, dict[str, Any], str | None]] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run(), name="realtime-publish")

    def put(self, group: str, event: dict[str, Any]) -> None:
        """Deliver ``event`` to this process's sockets now and queue it for the others."""
        skip = None
        hub = get_hub.existing()
        if hub is not None and hub.channel is not None and _leaves_out(get_channel_layer()):
            hub.dispatch_ordered(event)
            skip = hub.channel
        self.queue.put_nowait((group, event, skip))

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            layer = get_channel_layer()
            if not _leaves_out(layer):
                await self._send_one(layer, *batch[0][:2])
                continue
            # What was committed while the last batch was on its way goes in one batch, in
            # order: a busy process pays Redis' round trips per batch, not per event.
            while len(batch) < PUBLISH_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            for skip, run in groupby(batch, key=itemgetter(2)):
                events = [(group, event) for group, event, _ in run]
                try:
                    await layer.group_send_many(events, skip=skip)
                except Exception:
                    for group in dict.fromkeys(group for group, _ in events):
                        _send_failed(group)

    @staticmethod
    async def _send_one(layer: Any, group: str, event: dict[str, Any]) -> None:
        try:
            await layer.group_send(group, event)
        except Exception:
            _send_failed(group)


def _leaves_out(layer: Any) -> bool:
    """Whether the layer sends a batch to a group's members but one (``group_send_many``; the
    Redis layer only where its send script can write the messages, ``batches``)."""
    return callable(getattr(layer, "group_send_many", None)) and getattr(layer, "batches", True)


_publishers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Publisher]" = (
    weakref.WeakKeyDictionary()
)


def _publish(group: str, event: dict[str, Any]) -> None:
    """Queue an event on the running loop's publisher (called on that loop)."""
    loop = asyncio.get_running_loop()
    publisher = _publishers.get(loop)
    if publisher is None or publisher.task.done():
        publisher = _publishers[loop] = _Publisher()
    publisher.put(group, event)


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop whose worker thread we run in (sync_to_async), if any."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return None  # on a loop ourselves: not a worker thread
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    pid = getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None)
    if loop is None or pid != os.getpid() or not loop.is_running():
        return None
    return loop


def _send_failed(group: str) -> None:
    # The row is stored; clients recover it through the seq gap and sync, so a broker
    # outage must not turn a stored message into an error for its author.
    logger.exception("group_send to %s failed; clients will resync from the database", group)


def _send(group: str, event: dict[str, Any]) -> None:
    loop = _server_loop()
    if loop is not None:
        # In a server, the database thread hands the event to its loop and goes on at once:
        # waiting for the send (async_to_sync) cost two thread switches per message. In a
        # fresh context, not this thread's: the hub passes the event to this process's
        # sockets right there, and a task a socket starts then must not inherit the database
        # thread's (asgiref would take its database calls for calls from that thread).
        loop.call_soon_threadsafe(_publish, group, event, context=contextvars.Context())
        return
    try:  # a management command or script: no loop of ours, so send and wait
        async_to_sync(get_channel_layer().group_send)(group, event)
    except Exception:
        _send_failed(group)


def frame_broadcast(
    group: str, payload: dict[str, Any], *, seq: int | None = None, revoke: int | None = None
) -> None:
    """Send one frame to every socket in ``group`` once the current transaction commits.

    ``revoke``: the id of a user whose sockets in the group close (4403) before the frame is
    passed on; in the group's ``seq`` order, so no later frame reaches them.
    """
    event = {"type": "hub.frame", "group": group, "frame": frame_dumps(payload), "seq": seq}
    if revoke is not None:
        event["revoke"] = revoke
    transaction.on_commit(lambda: _send(group, event))


def frame_send_now(group: str, payload: dict[str, Any], *, skip_user: int | None = None) -> None:
    """Send an ephemeral frame (typing) to every socket in ``group`` now, from the event loop.

    It has no seq and is never stored, so it needs no transaction and is never part of a
    catch-up; the hubs pass it on at once, outside the group's seq order. ``skip_user``: the
    id of a user whose sockets do not get it (the typist's own).
    """
    event = {"type": "hub.frame", "group": group, "frame": frame_dumps(payload), "seq": None}
    if skip_user is not None:
        event["skip_user"] = skip_user
    _publish(group, event)


def event_broadcast(group: str, payload: dict[str, Any]) -> None:
    """Send an event that each socket renders for its own user, after commit."""
    event = {"type": "hub.event", "group": group, "payload": payload}
    transaction.on_commit(lambda: _send(group, event))


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


async def _send_many(groups: list[str], event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    await asyncio.gather(*(layer.group_send(group, {**event, "group": group}) for group in groups))


def event_send_each(groups: Iterable[str], payload: dict[str, Any], *, batch: int = 500) -> None:
    """Send one event to each of many groups (one per user), after commit.

    ``groups`` is read only after commit, so it may be a generator that pages through the
    database; each batch of groups costs one trip into the event loop.
    """
    event = {"type": "hub.event", "payload": payload}

    def send_all() -> None:
        for chunk in _batches(groups, batch):
            try:
                async_to_sync(_send_many)(chunk, event)
            except Exception:
                logger.exception("group_send to %d groups failed; clients resync", len(chunk))

    transaction.on_commit(send_all)
