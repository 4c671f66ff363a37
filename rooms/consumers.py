"""The room socket, ``/ws/rooms/<slug>/``: see docs/protocol.md for the contract."""

import asyncio
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings

from notifications.consumers import NotificationsMixin
from realtime.consumers import CLOSE_NOT_FOUND, ClientError, HubConsumer
from realtime.events import room_group

from . import selectors, services
from .events import message_payload
from .models import Message, Room


@database_sync_to_async
def _room_get(slug: str) -> Room | None:
    return Room.objects.filter(slug=slug).first()


@database_sync_to_async
def _message_create(room: Room, author: Any, body: str) -> None:
    services.message_create(room=room, author=author, body=body)


@database_sync_to_async
def _history(room_id: int, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    messages: list[Message] = selectors.messages_after(
        room_id=room_id, after=after, limit=limit + 1
    )
    return [message_payload(m) for m in messages[:limit]], len(messages) > limit


def _parse_seq(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ClientError("invalid_after", '"after" must be a non-negative integer seq.')
    return value


class RoomConsumer(NotificationsMixin, HubConsumer):
    """One user's socket in one room; it also carries the user's notifications."""

    async def connect(self) -> None:
        """Called when the socket opens: check who and where, join, then catch up."""
        if not await self.accept_user():
            return
        self.room = await _room_get(self.scope["url_route"]["kwargs"]["slug"])
        if self.room is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        after = 0
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if query.get("after"):
            try:
                after = max(0, int(query["after"][0]))
            except ValueError:
                after = 0
        # Join first, then read the database: a message stored in between is then in the
        # catch-up or in the outbox or both, and the writer drops the copy (skip_through).
        await self.join(room_group(self.room.pk))
        if "after" in query:
            self.skip_through = await self.send_history(after)
        self.start_writer()
        # After the writer starts, so loading the unread count never holds back the chat.
        await self.notifications_join()

    async def send_history(self, after: int) -> int:
        """Send the stored messages after ``after`` (capped) and a ``synced`` frame.

        Returns the last seq sent.
        """
        payloads, more = await _history(self.room.pk, after, settings.CHAT_SYNC_LIMIT)
        for payload in payloads:
            await self.send_json(payload)
        last = payloads[-1]["seq"] if payloads else after
        self.last_seq = max(self.last_seq, last)
        await self.send_json({"type": "synced", "last_seq": last, "more": more})
        return last

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        """Handle a client frame: ``message`` or ``sync``."""
        kind = frame["type"]
        if kind == "message":
            await self.receive_message(frame)
        elif kind == "sync":
            await self.send_history(_parse_seq(frame.get("after")))
        else:
            raise ClientError("unknown_type", f"Unknown frame type {kind!r}.")

    async def receive_message(self, frame: dict[str, Any]) -> None:
        """Store a message from this socket's user; the broadcast echoes it back."""
        body = frame.get("body")
        if not isinstance(body, str):
            raise ClientError("invalid_body", '"body" must be a string.')
        body = body.strip()
        if not body:
            raise ClientError("empty_body", "The message is empty.")
        limit = settings.CHAT_MESSAGE_MAX_LENGTH
        if len(body) > limit:
            raise ClientError("body_too_long", f"Messages are limited to {limit} characters.")
        if not self.rate_allows():
            raise ClientError(
                "rate_limited", "You are sending too fast; this message was not sent."
            )
        await _message_create(self.room, self.user, body)

    resync_scheduled = False

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
