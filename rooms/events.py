"""Real-time events of rooms: every change's frame is built here, sent by ``realtime.events``
after commit. Live delivery and catch-up (``catchup_frames``) build frames with the same
functions, so they cannot disagree."""

from typing import Any

from realtime.events import (
    event_broadcast,
    frame_broadcast,
    frame_send_now,
    room_group,
    user_group,
)

from .formatting import body_html, body_text
from .models import Message, Room

EXCERPT_LENGTH = 100


def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def reply_payload(parent: Message | None) -> dict[str, Any] | None:
    """What a reply shows of its parent: author, seq and a short excerpt of its text as shown
    (plain text: "**done**" reads "done")."""
    if parent is None:
        return None
    text = body_text(parent.body)
    if len(text) > EXCERPT_LENGTH:
        text = text[: EXCERPT_LENGTH - 1] + "…"
    return {
        "id": parent.pk,
        "seq": parent.seq,
        "user": parent.author.get_username(),
        "excerpt": text,
        "deleted": parent.deleted is not None,
    }


def message_payload(
    message: Message, reactions: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The wire form of a stored message in its current state (docs/protocol.md)."""
    parent = message.reply_to if message.reply_to_id is not None else None
    return {
        "type": "message",
        "id": message.pk,
        "seq": message.seq,
        "room": message.room.slug,
        "user": message.author.get_username(),
        "body": message.body,
        "html": body_html(message.body),
        "created": _iso(message.created),
        "client_id": message.client_id,
        "reply_to": message.reply_to_id,
        "reply": reply_payload(parent),
        "edited": _iso(message.edited),
        "reactions": reactions or {},
    }


def edited_payload(message: Message) -> dict[str, Any]:
    return {
        "type": "message.edited",
        "id": message.pk,
        "seq": message.changed_seq,
        "body": message.body,
        "html": body_html(message.body),
        "edited": _iso(message.edited),
    }


def deleted_payload(message: Message) -> dict[str, Any]:
    return {"type": "message.deleted", "id": message.pk, "seq": message.changed_seq}


def reactions_payload(message: Message, reactions: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "type": "reactions",
        "id": message.pk,
        "seq": message.changed_seq,
        "reactions": reactions,
    }


def catchup_frames(message: Message, reactions: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The frame that brings a client to ``message``'s current state (it changed after the
    client's seq): its tombstone, or the whole message as it is now, which the client puts in
    place of its copy. Whole messages keep catch-up exact when it comes in pages: a message
    created before the client's seq may still be unknown to it, because a page is cut by the
    latest change of each message, not by its creation."""
    if message.deleted is not None:
        return [deleted_payload(message)]
    return [message_payload(message, reactions)]


def message_created(message: Message) -> None:
    """Announce a stored message to every socket in its room."""
    frame_broadcast(room_group(message.room_id), message_payload(message), seq=message.seq)


def message_edited(message: Message) -> None:
    frame_broadcast(room_group(message.room_id), edited_payload(message), seq=message.changed_seq)


def message_deleted(message: Message) -> None:
    frame_broadcast(room_group(message.room_id), deleted_payload(message), seq=message.changed_seq)


def reactions_changed(message: Message, reactions: dict[str, list[str]]) -> None:
    frame_broadcast(
        room_group(message.room_id),
        reactions_payload(message, reactions),
        seq=message.changed_seq,
    )


def room_summary(room: Room, title: str) -> dict[str, Any]:
    """How a rooms list shows a room."""
    return {"slug": room.slug, "name": title, "kind": room.kind, "url": room.get_absolute_url()}


MEMBER_ADDED = "room.added"


def member_added(room: Room, user_id: int, title: str) -> None:
    """Tell every socket of a newly added member, so their rooms list shows the room live."""
    event_broadcast(user_group(user_id), {"type": MEMBER_ADDED, "room": room_summary(room, title)})


def member_removed(room: Room, user: Any, seq: int) -> None:
    """Tell the room that a user left or was removed; that user's sockets close (4403).

    The event takes its place in the room's ``seq`` order, so on every worker the user's
    sockets close before any frame of a later change could reach them.
    """
    payload = {"type": "member.removed", "seq": seq, "room": room.slug, "user": user.get_username()}
    frame_broadcast(room_group(room.pk), payload, seq=seq, revoke=user.pk)


ROOM_REMOVED = "room.removed"


def member_left(room: Room, user_id: int) -> None:
    """Tell a user's sockets they left a public room: their sidebars drop it. (Leaving a private
    room is ``member_removed``, in the room's seq order.)"""
    event_broadcast(user_group(user_id), {"type": ROOM_REMOVED, "room": room.slug})


ROOM_READ = "read"


def room_read(user_id: int, room: Room, seq: int, unread: int, through: int) -> None:
    """Tell every socket of a user that they read ``room`` up to ``seq``: each sidebar sets the
    room's count (``unread`` as of room seq ``through``; a socket adds what it counted live
    after that) and the user's other tabs of the room know what was read."""
    payload = {
        "type": ROOM_READ,
        "room": room.slug,
        "seq": seq,
        "unread": unread,
        "through": through,
    }
    event_broadcast(user_group(user_id), payload)


def typing(room: Room, user: Any) -> None:
    """Tell the room's other users' sockets that ``user`` is typing (not the typist's own)."""
    payload = {"type": "typing", "user": user.get_username()}
    frame_send_now(room_group(room.pk), payload, skip_user=user.pk)
