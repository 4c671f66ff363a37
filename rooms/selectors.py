"""Reads of rooms and messages."""

from django.db.models import QuerySet

from .models import Message, Room


def room_list() -> QuerySet[Room]:
    """Every room, most recent activity first."""
    return Room.objects.order_by("-last_activity", "-pk")


def messages_latest(*, room: Room, limit: int) -> list[Message]:
    """The room's latest ``limit`` messages, oldest first."""
    latest = Message.objects.filter(room=room).select_related("author").order_by("-seq")[:limit]
    return list(reversed(latest))


def messages_after(*, room_id: int, after: int, limit: int) -> list[Message]:
    """Up to ``limit`` of the room's messages with a seq above ``after``, in order."""
    return list(
        Message.objects.filter(room_id=room_id, seq__gt=after)
        .select_related("author", "room")
        .order_by("seq")[:limit]
    )
