"""The one module that sends real-time events: every ``group_send`` of the project is here.

Events are sent after the surrounding transaction commits, so no socket ever hears of a row that
was rolled back. Each event carries the frame already serialised once, and goes to a group whose
members are worker processes (see ``realtime.hub``), not individual sockets.
"""

import asyncio
import logging
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import orjson
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def room_group(room_id: int) -> str:
    """Name of the group of a room's sockets."""
    return f"room-{room_id}"


def user_group(user_id: int) -> str:
    """Name of the group of one user's sockets."""
    return f"user-{user_id}"


EVERYONE_GROUP = "everyone"


def frame_dumps(payload: dict[str, Any]) -> str:
    """Serialise a frame for the wire."""
    return orjson.dumps(payload).decode()


def _send(group: str, event: dict[str, Any]) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, event)
    except Exception:
        # The row is stored; clients recover it through the seq gap and sync, so a broker
        # outage must not turn a stored message into an error for its author.
        logger.exception("group_send to %s failed; clients will resync from the database", group)


def frame_broadcast(group: str, payload: dict[str, Any], *, seq: int | None = None) -> None:
    """Send one frame to every socket in ``group`` once the current transaction commits."""
    event = {"type": "hub.frame", "group": group, "frame": frame_dumps(payload), "seq": seq}
    transaction.on_commit(lambda: _send(group, event))


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
