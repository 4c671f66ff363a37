"""A JSON WebSocket consumer that receives its groups' events through the process hub."""

import asyncio
import collections
import logging
import time
from typing import Any

import orjson
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import eager
from .events import frame_dumps
from .hub import get_hub
from .presence import get_presence

logger = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 4008


class ClientError(Exception):
    """A frame the client sent that the server refuses; answered with an error frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class TokenBucket:
    """Allows ``rate`` actions per second with bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class HubConsumer(AsyncWebsocketConsumer):
    """Base consumer: JSON frames in, hub deliveries written straight to the socket.

    Sockets get no channel of their own: the process hub receives each group event once and
    writes the frame to every local socket. A socket whose client reads too slowly gets a
    bounded backlog, drained in order by a task of its own; past the bound it is closed (4008).
    """

    groups_joined: list[str]
    user_id: int | None = None
    presence_counted = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one socket: ``AsyncConsumer.__call__`` without a channel of its own.

        Channels' version also waits on a per-socket channel through ``await_many_dispatch``,
        which keeps a task per socket and makes a new one for every frame received.
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route an ASGI message to its handler.

        Channels closes stale database connections before every handler, a thread hop per
        frame; the database work here runs in ``database_sync_to_async``, which does that itself.
        """
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Called when a socket asks to connect."""
        self.groups_joined = []
        # Frames waiting for this socket: until ``start_writer`` (so a catch-up goes first), and
        # while a write waits for the client to read. None when frames are written at once.
        self.backlog: collections.deque[tuple[int | None, str]] | None = collections.deque()
        self.writer: asyncio.Future[None] | None = None
        # Live frames with a seq up to here were already sent by a catch-up; the highest seq
        # written is kept to resync from after a gap in the live path.
        self.skip_through = 0
        self.last_seq = 0
        self.closing = False
        self.bucket: TokenBucket | None = None  # made on the first message: most sockets only read
        self.frame_send = self.base_send
        await super().websocket_connect(message)

    async def accept_user(self) -> bool:
        """Accept the handshake, then close with 4401 unless the socket's user is logged in."""
        self.user = self.scope["user"]
        await self.accept()
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        # The hub skips this socket for its own user's ephemeral frames (typing).
        self.user_id = self.user.pk
        # Every open socket of a logged-in user makes them online (realtime.presence).
        get_presence().user_open(self.user.pk, self.user.get_username())
        self.presence_counted = True
        return True

    async def join(self, group: str) -> None:
        """Receive ``group``'s events from now on."""
        await get_hub().subscribe(group, self)
        self.groups_joined.append(group)

    def start_writer(self) -> None:
        """Write the frames queued so far, then every later one as it comes."""
        if self.writer is None and self.backlog is not None:
            self.writer = asyncio.ensure_future(self._drain(None))

    def deliver_frame(self, frame: str, seq: int | None) -> None:
        """Write or queue a frame from the hub."""
        self.enqueue(frame, seq)

    def deliver_event(self, payload: dict[str, Any]) -> None:
        """Write or queue an event from the hub rendered for this socket; subclasses override."""
        self.enqueue(frame_dumps(payload))

    def resync(self) -> None:
        """Recover from lost hub events; subclasses override."""

    def revoke(self, user_id: int) -> None:
        """Close this socket (4403) if it is ``user_id``'s."""
        user = getattr(self, "user", None)
        if user is not None and user.pk == user_id:
            self.close_soon(CLOSE_FORBIDDEN)

    def enqueue(self, frame: str, seq: int | None = None) -> None:
        """Write a frame now, or queue it behind the ones waiting; close a socket far behind."""
        if self.closing:
            return
        if self.backlog is None:
            self._write_now(seq, frame)
            return
        if len(self.backlog) >= settings.CHAT_OUTBOX_LIMIT:
            # A socket that cannot keep up must not hold back the room or grow without bound;
            # it reconnects with ?after=<seq> and catches up from the database.
            logger.warning("closing a socket %d frames behind", len(self.backlog))
            self.close_soon(CLOSE_TOO_SLOW)
            return
        self.backlog.append((seq, frame))

    def close_soon(self, code: int) -> None:
        """Stop writing to this socket and close it with ``code``."""
        if self.closing:
            return
        self.closing = True
        if self.backlog is not None:
            self.backlog.clear()
        self.closer = asyncio.ensure_future(self.close(code=code))

    def _fresh(self, seq: int | None) -> bool:
        """False for a live frame a catch-up already sent; notes the seq of the others."""
        if seq is None:
            return True
        if seq <= self.skip_through:
            return False
        if seq > self.last_seq:
            self.last_seq = seq
        return True

    def _write_now(self, seq: int | None, frame: str) -> None:
        if not self._fresh(seq):
            return
        try:
            # Almost always finishes synchronously: no task, no queue, per socket per message.
            pending = eager.start(self.frame_send({"type": "websocket.send", "text": frame}))
        except Exception:
            logger.debug("write to a closed socket", exc_info=True)
            self.closing = True
            return
        if pending is not None:
            # The client is not reading fast enough: later frames wait behind this one.
            self.backlog = collections.deque()
            self.writer = asyncio.ensure_future(self._drain(pending))

    async def _drain(self, pending: "asyncio.Future[None] | None") -> None:
        try:
            if pending is not None:
                await pending
            while self.backlog:
                seq, frame = self.backlog.popleft()
                if self._fresh(seq):
                    await self.frame_send({"type": "websocket.send", "text": frame})
            self.backlog = None
        except asyncio.CancelledError:
            raise
        except Exception:
            # The socket went away under us; websocket_disconnect cleans up.
            logger.debug("writer stopped", exc_info=True)
            self.closing = True
        finally:
            self.writer = None

    def rate_allows(self) -> bool:
        """Spend one of this socket's message tokens, if it has one."""
        if self.bucket is None:
            self.bucket = TokenBucket(settings.CHAT_RATE_PER_SECOND, settings.CHAT_RATE_BURST)
        return self.bucket.take()

    async def send_json(self, payload: dict[str, Any]) -> None:
        """Send one frame to this socket now."""
        await self.send(text_data=frame_dumps(payload))

    async def send_error(self, code: str, detail: str) -> None:
        """Tell this socket what was wrong with its frame."""
        await self.send_json({"type": "error", "code": code, "detail": detail})

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the socket; frames it sends after this are ignored."""
        self.closing = True
        await super().close(code=code, reason=reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame: parse it and hand it to ``receive_frame``."""
        if self.closing:
            return  # refused, removed or closing: nothing it sends is acted on
        try:
            if text_data is None:
                raise ClientError("binary_frame", "Frames must be JSON text, not binary.")
            try:
                frame = orjson.loads(text_data)
            except orjson.JSONDecodeError:
                raise ClientError("invalid_json", "The frame is not valid JSON.") from None
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise ClientError("invalid_frame", 'A frame is a JSON object with a "type".')
            await self.receive_frame(frame)
        except ClientError as error:
            await self.send_error(error.code, error.detail)

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        """Handle one parsed frame; subclasses override."""
        raise ClientError("unknown_type", f"Unknown frame type {frame['type']!r}.")

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes: leave the hub and stop writing."""
        self.closing = True
        if self.presence_counted:
            self.presence_counted = False
            get_presence().user_close(self.user_id)
        hub = get_hub()
        for group in self.groups_joined:
            await hub.unsubscribe(group, self)
        self.groups_joined = []
        if self.writer is not None:
            self.writer.cancel()
        self.backlog = None
