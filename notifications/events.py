"""Real-time events of notifications: payloads built here, sent by ``realtime.events``.

A notification event is rendered by each socket for its own user (``deliver_event``), because
the frame carries that user's unread count. The frame is serialised once here, up to the count,
so a socket only appends a number: fan-out to many sockets does no JSON work per socket.
"""

from collections.abc import Iterable
from typing import Any

from realtime.events import (
    EVERYONE_GROUP,
    event_broadcast,
    event_send_each,
    frame_dumps,
    user_group,
)

from .models import Notification

NOTIFICATION = "notification"
READ = "notification.read"
UNREAD = "notification.unread"


def notification_wire(notification: Notification) -> dict[str, Any]:
    """The wire form of a notification, without the per-user ``unread`` (docs/notifications.md)."""
    return {
        "type": NOTIFICATION,
        "id": notification.pk,
        "level": notification.level,
        "text": notification.text,
        "link": notification.link,
        "created": notification.created.isoformat().replace("+00:00", "Z"),
    }


def notification_frame(head: str, unread: int) -> str:
    """The frame of a notification for a user with ``unread`` unread notifications."""
    return f"{head}{unread}}}"


def notification_payload(
    notification: Notification, *, user_max: int | None = None
) -> dict[str, Any]:
    """The hub event of a notification; ``user_max`` bounds who an ``everyone`` send reached."""
    head = frame_dumps(notification_wire(notification))[:-1] + ',"unread":'
    return {"type": NOTIFICATION, "id": notification.pk, "head": head, "user_max": user_max}


def notification_broadcast(notification: Notification, *, user_max: int) -> None:
    """Announce a notification stored for every active user up to ``user_max``: one send."""
    event_broadcast(EVERYONE_GROUP, notification_payload(notification, user_max=user_max))


def notification_send(notification: Notification, user_ids: Iterable[int]) -> None:
    """Announce a notification to each of its recipients' own group, after commit."""
    payload = notification_payload(notification)
    event_send_each((user_group(user_id) for user_id in user_ids), payload)


def notification_read(user_id: int, *, ids: list[int] | None, unread: int, through: int) -> None:
    """Tell every socket of a user that notifications were read (``ids`` None: all of them).

    ``unread`` counts the user's unread notifications with an id up to ``through``.
    """
    payload = {"type": READ, "ids": ids, "unread": unread, "through": through}
    event_broadcast(user_group(user_id), payload)
