"""The room socket, ``/ws/rooms/<slug>/``: see docs/protocol.md for the contract.

The consumer parses frames and checks who is asking; ``rooms.services`` makes every change and
``rooms.selectors`` decides who may read what.
"""

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings

from chatapp.prepared import reads_run
from notifications import selectors as notification_selectors
from notifications.consumers import NotificationsMixin
from realtime.consumers import (
    CLOSE_NOT_FOUND,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
    HubConsumer,
)
from realtime.db import Failed, changes_sync_to_async, reads_batched, reads_sync_to_async
from realtime.events import room_group
from realtime.presence import get_presence
from realtime.sessions import sessions_valid
from realtime.validation import ClientError, int64_or_none, text_clean

from . import events, selectors, services
from .catchup import Catchup, catchup
from .models import Message, Room
from .sidebar import SidebarMixin

SEQ_MAX = 2**63 - 1
HISTORY_LIMIT_MAX = 100


_rooms_get = reads_batched(selectors.rooms_readable_on_connect)


async def _room_get(user: Any, slug: str) -> Room | None:
    """``rooms_readable_on_connect`` of this connect, with those queued with it."""
    return await _rooms_get((user, slug))


def _message_get(room: Room, message_id: Any) -> Message:
    message = selectors.message_in_room(room=room, message_id=message_id)
    if message is None or message.deleted is not None:
        raise services.ChangeRefused("not_found", "No such message in this room.")
    return message


def _state_frames(message: Message) -> list[dict[str, Any]]:
    """A message's current state as frames: itself, and its tombstone if it was deleted."""
    frame = events.message_payload(message, selectors.reactions_state(message))
    if message.deleted is None:
        return [frame]
    return [frame, events.deleted_payload(message)]


@changes_sync_to_async
def _message_create(
    room: Room, author: Any, body: str, client_id: str | None, reply_to: Any
) -> list[dict[str, Any]]:
    """Store a message; returns the frames this socket gets beyond the broadcast (a retry's
    original)."""
    parent = _message_get(room, reply_to) if reply_to is not None else None
    message, created = services.message_post(
        room=room, author=author, body=body, client_id=client_id, reply_to=parent
    )
    return [] if created else _state_frames(message)


@changes_sync_to_async
def _message_edit(room: Room, user: Any, message_id: Any, body: str) -> None:
    services.message_edit(message=_message_get(room, message_id), user=user, body=body)


@changes_sync_to_async
def _message_delete(room: Room, user: Any, message_id: Any) -> None:
    services.message_delete(message=_message_get(room, message_id), user=user)


@changes_sync_to_async
def _reaction_set(room: Room, user: Any, message_id: Any, emoji: str, on: bool) -> None:
    services.reaction_set(message=_message_get(room, message_id), user=user, emoji=emoji, on=on)


_history = reads_sync_to_async(catchup)


@dataclass(frozen=True, slots=True)
class _Opened:
    """What a room socket's connect loads in one database call, after joining its groups."""

    history: Catchup | None  # the catch-up, if ?after= was given
    unread: tuple[int, int]  # the user's notifications: (unread, through)
    sidebar: list[tuple[int, str, int, int]]  # (id, slug, unread, through) of the user's rooms


@dataclass(frozen=True, slots=True)
class _Connect:
    """What a room socket's connect asks of the database once its groups are joined:
    ``check_session``, whether a session check may have passed the socket by before it joined
    (``HubConsumer.session_checks_missed``)."""

    user: Any
    room: Room
    session_key: str | None
    after: int | None  # ?after=, if given
    check_session: bool


def _opened_many(connects: list[_Connect]) -> list[_Opened | int | Failed]:
    """Everything the connects queued together on the database thread read once their groups
    are joined (``reads_batched``): a call each would cost as much as a small query (seven
    calls per connect made a connect 7 times a bare handshake's CPU), and on PostgreSQL their
    reads go out in one pipeline, one round trip for all of them (bench P1 and S5,
    docs/performance.md). Each answer is a close code instead when the session ended meanwhile
    (4401), the room is gone (1013: try again) or the user may no longer read it (4404); an
    error of one connect's own finish fails that connect only, a failed read all of them."""
    answers: list[_Opened | int | Failed] = [CLOSE_UNAUTHENTICATED] * len(connects)
    checked = [(c.session_key, c.user.pk) for c in connects if c.check_session]
    valid = iter(sessions_valid(checked) if checked else ())
    reading = [i for i, c in enumerate(connects) if not c.check_session or next(valid)]
    # The room's version, the user's notification count and sidebar of each (the count and the
    # sidebar are read even if the room turns out gone: that is rare, and they are small).
    found = reads_run(
        *(
            read
            for i in reading
            for read in (
                selectors.room_present_read(room=connects[i].room),
                notification_selectors.unread_snapshot_read(user_id=connects[i].user.pk),
                selectors.conversations_unread_read(user=connects[i].user),
            )
        )
    )
    for k, i in enumerate(reading):
        try:
            answers[i] = _opened_finish(connects[i], *found[3 * k : 3 * k + 3])
        except Exception as exc:
            answers[i] = Failed(exc)
    return answers


def _opened_finish(
    connect: _Connect,
    version: tuple[int, Any] | None,
    unread: tuple[int, int],
    sidebar: list[tuple[int, str, int, int]],
) -> _Opened | int:
    user, room = connect.user, connect.room
    if version is None:
        # Deleted since it was found (on any worker, whose kept copy is now forgotten): the
        # client tries again and is then told whatever is there now.
        return CLOSE_TRY_AGAIN
    if not room.is_public and not selectors.room_can_read(user=user, room=room):
        # Removed between the check by slug and the join, so the removal's event (which closes
        # the sockets already joined) passed this one by.
        return CLOSE_NOT_FOUND
    history = None
    if connect.after is not None:
        history = catchup(room.pk, connect.after, settings.CHAT_SYNC_LIMIT, version)
    return _Opened(history=history, unread=unread, sidebar=sidebar)


_opened_batched = reads_batched(_opened_many)


async def _opened(
    user: Any, room: Room, session_key: str | None, after: int | None, check_session: bool = True
) -> _Opened | int:
    """``_opened_many`` of this connect, with those queued with it."""
    return await _opened_batched(_Connect(user, room, session_key, after, check_session))


@reads_sync_to_async
def _history_page(
    user: Any, room: Room, cursor: str, seq: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    # The access rule again, not only at connect: a member removed a moment ago reads nothing.
    if not selectors.room_can_read(user=user, room=room):
        raise services.ChangeRefused("forbidden", "You are not a member of this room.")
    page = selectors.messages_before if cursor == "before" else selectors.messages_after
    messages, more = page(room=room, **{cursor: seq}, limit=limit)
    return [events.message_payload(m, selectors.reactions_state(m)) for m in messages], more


@changes_sync_to_async
def _read_mark(user: Any, room: Room, seq: int) -> None:
    services.read_mark(user=user, room=room, seq=seq)


def _parse_seq(value: Any, name: str = "after") -> int:
    seq = int64_or_none(value)
    if seq is None:
        raise ClientError(f"invalid_{name}", f'"{name}" must be a non-negative 64-bit integer seq.')
    return seq


def _parse_history(frame: dict[str, Any]) -> tuple[str, int, int]:
    """``(cursor, seq, limit)`` of a ``history`` frame: exactly one of "before" and "after"."""
    given = [name for name in ("before", "after") if frame.get(name) is not None]
    if len(given) != 1:
        raise ClientError("invalid_history", 'A history frame has one of "before" or "after".')
    limit = frame.get("limit", settings.CHAT_HISTORY_PAGE)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= HISTORY_LIMIT_MAX:
        raise ClientError("invalid_limit", f'"limit" must be an integer 1-{HISTORY_LIMIT_MAX}.')
    return given[0], _parse_seq(frame[given[0]], given[0]), limit


def _parse_body(frame: dict[str, Any]) -> str:
    body = frame.get("body")
    if not isinstance(body, str):
        raise ClientError("invalid_body", '"body" must be a string.')
    return text_clean(body, max_length=settings.CHAT_MESSAGE_MAX_LENGTH)


class RoomConsumer(SidebarMixin, NotificationsMixin, HubConsumer):
    """One user's socket in one room; it also carries the user's notifications."""

    async def connect(self) -> None:
        """Called when the socket opens: check who and where, join, then catch up."""
        if not await self.accept_user():
            return
        # A room the user may not read closes exactly like an unknown one: nothing is sent.
        slug = self.scope["url_route"]["kwargs"]["slug"]
        self.room = selectors.room_kept(user=self.user, slug=slug) or await _room_get(
            self.user, slug
        )
        if self.room is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        after = 0
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if query.get("after"):
            try:
                after = min(SEQ_MAX, max(0, int(query["after"][0])))
            except ValueError:
                after = 0
        # Join first, then read the database: a change stored in between is then in the
        # catch-up or in the outbox or both, and the writer drops the copy (skip_through).
        # The same holds for the user's events (a session check, a notification) and for the
        # sidebar's count of this room, all loaded in the one call below.
        await self.join(room_group(self.room.pk))
        await self.notifications_subscribe(check_session=False)
        self.sidebar_watch_room(self.room)
        opened = await _opened(
            self.user,
            self.room,
            self.session_key,
            after if "after" in query else None,
            await self.session_checks_missed(),
        )
        if isinstance(opened, int):
            await self.close(code=opened)
            return
        # ?presence=1 (the page) asks for the room's online members: queued behind the
        # catch-up, then each change of them. Every socket counts its user as in the room.
        listener = self if query.get("presence") == ["1"] else None
        get_presence().room_enter(self.room.pk, self.room.slug, self.user.pk, listener)
        self.presence_seat = (listener,)
        if opened.history is not None:
            self.skip_through = await self.history_send(*opened.history)
        self.start_writer()
        self.notifications_loaded(*opened.unread)
        self.sidebar_loaded(opened.sidebar)

    async def send_history(self, after: int) -> int:
        """Send every change after ``after`` (capped) and a ``synced`` frame.

        Returns the seq the client is then current to.
        """
        return await self.history_send(
            *await _history(self.room.pk, after, settings.CHAT_SYNC_LIMIT)
        )

    async def history_send(self, frames: tuple[str, ...], last: int, more: bool) -> int:
        """Send a loaded catch-up (``rooms.catchup``) and its ``synced`` frame; returns
        ``last``."""
        # A catch-up costs the user's sync budget by its size: asking again and again for
        # everything (sync after=0) is refused once the budget is spent.
        await self.rate_charge("sync", len(frames))
        for frame in frames:
            await self.send(text_data=frame)
        self.last_seq = max(self.last_seq, last)
        await self.send_json({"type": "synced", "last_seq": last, "more": more})
        return last

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        """Handle a client frame: a change (``message``, ``edit``, ``delete``, ``react``) or
        ``sync``."""
        kind = frame["type"]
        if kind == "sync":
            await self.send_history(_parse_seq(frame.get("after")))
            return
        if kind in self.reads:
            await self.reads[kind](self, frame)
            return
        if kind == "typing":
            self.receive_typing()
            return
        handler = self.changes.get(kind)
        if handler is None:
            raise ClientError("unknown_type", f"Unknown frame type {kind!r}.")
        try:
            await handler(self, frame)
        except services.ChangeRefused as refused:
            raise ClientError(refused.code, refused.detail) from None

    async def receive_message(self, frame: dict[str, Any]) -> None:
        """Store a message from this socket's user; the broadcast echoes it back."""
        body = _parse_body(frame)
        client_id = frame.get("client_id")
        # The frame is checked before any database work (the service checks again for its
        # other callers), so a bad key is refused whatever else is wrong.
        if client_id is not None and not services.client_id_valid(client_id):
            raise ClientError("invalid_client_id", '"client_id" must be 1-64 of A-Z a-z 0-9 _ -.')
        for original in await _message_create(
            self.room, self.user, body, client_id, frame.get("reply_to")
        ):
            await self.send_json(original)

    async def receive_edit(self, frame: dict[str, Any]) -> None:
        body = _parse_body(frame)
        await _message_edit(self.room, self.user, frame.get("id"), body)

    async def receive_delete(self, frame: dict[str, Any]) -> None:
        await _message_delete(self.room, self.user, frame.get("id"))

    async def receive_react(self, frame: dict[str, Any]) -> None:
        emoji, on = frame.get("emoji"), frame.get("on", True)
        if not services.emoji_valid(emoji):  # before looking the message up, as client_id
            raise ClientError("invalid_emoji", '"emoji" must be one emoji.')
        if not isinstance(on, bool):
            raise ClientError("invalid_frame", '"on" must be true or false.')
        await _reaction_set(self.room, self.user, frame.get("id"), emoji, on)

    async def receive_read(self, frame: dict[str, Any]) -> None:
        """The user has seen the room up to ``seq``; the marker only moves forward."""
        await _read_mark(self.user, self.room, _parse_seq(frame.get("seq"), "seq"))

    async def receive_history(self, frame: dict[str, Any]) -> None:
        """A page of older (``before``) or newer (``after``) messages, oldest first."""
        cursor, seq, limit = _parse_history(frame)
        try:
            messages, more = await _history_page(self.user, self.room, cursor, seq, limit)
        except services.ChangeRefused as refused:
            raise ClientError(refused.code, refused.detail) from None
        await self.rate_charge("history", len(messages))
        await self.send_json({"type": "history", cursor: seq, "messages": messages, "more": more})

    reads = {"read": receive_read, "history": receive_history}

    def receive_typing(self) -> None:
        """Tell the room's other users that this one is typing: never stored, no seq.

        Dropped without an answer when this socket relayed one less than
        ``CHAT_TYPING_INTERVAL`` seconds ago, or when the room has more than
        ``CHAT_TYPING_MAX_ONLINE`` members online (there it would be noise).
        """
        now = time.monotonic()
        if now - self.typing_at < settings.CHAT_TYPING_INTERVAL:
            return
        if get_presence().room_online_count(self.room.pk) > settings.CHAT_TYPING_MAX_ONLINE:
            return
        self.typing_at = now
        events.typing(self.room, self.user)

    changes = {
        "message": receive_message,
        "edit": receive_edit,
        "delete": receive_delete,
        "react": receive_react,
    }

    room: Room | None
    # Set on every socket by ``HubConsumer.__init__``, in this order (see there why).
    # ``presence_seat``: ``(listener,)`` while counted in the room's presence, else None.
    socket_state: dict[str, Any] = {"room": None, "presence_seat": None}
    # Rare states, not in the table (a socket that reaches one gets a key of its own then).
    resync_scheduled = False
    typing_at = -math.inf  # when this socket last relayed a typing frame

    def revoke(self, user_id: int) -> None:
        """A member left or was removed: this socket closes if theirs; the room's list changes."""
        super().revoke(user_id)
        get_presence().room_changed(self.room.pk)

    async def release(self) -> None:
        """However the socket ended: leave the room's presence, then the hub."""
        if self.presence_seat is not None:
            (listener,), self.presence_seat = self.presence_seat, None
            get_presence().room_leave(self.room.pk, self.user.pk, listener)
        await super().release()

    def resync(self) -> None:
        """Send whatever was stored after the last seq this socket got."""
        super().resync()
        # The socket is in several groups (room, user, everyone) and a recovering hub tells it
        # once per group: calls before the catch-up starts share it.
        if not self.closing and not self.resync_scheduled:
            self.resync_scheduled = True
            asyncio.get_running_loop().create_task(self._resync_history())

    async def _resync_history(self) -> None:
        self.resync_scheduled = False
        await self.send_history(self.last_seq)
