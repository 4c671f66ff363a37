"""Real-time events of rooms: frames built here, sent by ``realtime.events`` after commit."""

from typing import Any

from realtime.events import frame_broadcast, room_group

from .models import Message


def message_payload(message: Message) -> dict[str, Any]:
    """The wire form of a stored message (docs/protocol.md)."""
    return {
        "type": "message",
        "id": message.pk,
        "seq": message.seq,
        "room": message.room.slug,
        "user": message.author.get_username(),
        "body": message.body,
        "created": message.created.isoformat().replace("+00:00", "Z"),
    }


def message_created(message: Message) -> None:
    """Announce a stored message to every socket in its room."""
    frame_broadcast(room_group(message.room_id), message_payload(message), seq=message.seq)
