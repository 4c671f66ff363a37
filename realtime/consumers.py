"""A JSON WebSocket consumer that receives its groups' events through the process hub."""

import asyncio
import collections
import functools
import itertools
import logging
import math
import sys
from typing import Any

import orjson
from asgiref.sync import markcoroutinefunction
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import eager
from .db import reads_batched
from .events import frame_dumps, user_group
from .hub import get_hub
from .limits import get_limits
from .loops import per_loop
from .presence import get_presence
from .sessions import SESSION_CHECK, checks_mark, key_digest, sessions_valid
from .validation import ClientError

logger = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 4008
CLOSE_RATE_LIMITED = 4429  # a flood that goes on, or one socket past the user's cap
CLOSE_TOO_BIG = 1009  # RFC 6455: a message too big to process
CLOSE_SERVER_ERROR = 1011  # RFC 6455: the server failed while opening the socket
CLOSE_TRY_AGAIN = 1013  # RFC 6455 registry "Try Again Later": what it asked for just changed

_socket_ids = itertools.count()
# The sockets whose checks fall due together (a session-check event, the expiry second) load
# their users together.
_session_valid = reads_batched(sessions_valid)


class HubConsumer(AsyncWebsocketConsumer):
    """Base consumer: JSON frames in, hub deliveries written straight to the socket.

    Sockets get no channel of their own: the process hub receives each group event once and
    writes the frame to every local socket. A socket whose client reads too slowly gets a
    bounded backlog, drained in order by a task of its own; past the bound it is closed (4008).
    """

    groups_joined: list[str]
    # Channels' own layer groups: none (the hub's are ``groups_joined``). Class attributes, so
    # Channels sets neither on each socket.
    groups: tuple[str, ...] = ()
    channel_layer = None

    # Every attribute a socket ever sets, with its value until then, set in this order by
    # ``__init__`` (then the mixins', then the consumer's). Sockets whose attributes are set in
    # the same order, fewer than 30 of them, share one key table (CPython's key-sharing
    # dictionaries) and each keeps only its values: 1.3 KB less per idle socket than a dict of
    # its own (S3, docs/performance.md; 29 attributes in all on a room socket today). A new
    # attribute belongs in one of these tables, and past 29 costs every socket that 1.3 KB.
    socket_state: dict[str, Any] = {
        "scope": None,
        "base_send": None,
        "frame_send": None,  # None also from ``accept`` until the held accept is sent
        "user": None,
        "groups_joined": (),
        "backlog": None,
        "writer": None,
        "skip_through": 0,
        "last_seq": 0,
        "closing": False,
        "released": True,  # until connected: nothing to release
        "refused": 0,
        "socket_id": None,
        "user_id": None,  # set once logged in: counted online (realtime.presence) until released
        "session_key": None,
        "session_task": None,
        "session_timer": None,  # the second (``_Expiries``) its session is next checked at
    }
    # Rare states, not in the table: a socket that reaches one gets a key of its own then.
    closer: "asyncio.Future[None] | None" = None  # set only on a socket being closed
    session_recheck = False  # a session check came while one was running

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        """Channels' ``as_asgi`` as a tail call: the consumer's own coroutine is what the server
        awaits, with no frame of this function beside it for the socket's life."""

        def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
            return cls(**initkwargs)(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return markcoroutinefunction(app)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for klass in reversed(type(self).__mro__):
            for name, value in vars(klass).get("socket_state", {}).items():
                setattr(self, name, value)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one socket: ``AsyncConsumer.__call__`` without a channel of its own.

        Channels' version also waits on a per-socket channel through ``await_many_dispatch``,
        which keeps a task per socket and makes a new one for every frame received.
        """
        self.scope = scope
        self.base_send = send
        try:
            while True:
                message = await receive()
                try:
                    await self.dispatch(message)
                except StopConsumer:
                    raise
                except Exception:
                    await self.failed(message)
                    if message["type"] == "websocket.disconnect":
                        break  # nothing more will come
        except StopConsumer:
            pass
        finally:
            # However the socket ended (closed, a handler raised, the server shut down), none
            # of it may stay in the hub or in its user's socket count.
            await self.release()

    async def failed(self, message: dict[str, Any]) -> None:
        """A handler raised: log it, tell the client, keep serving (or close while opening)."""
        kind = message.get("type")
        if isinstance(sys.exc_info()[1], OSError):
            # The client went away mid-handler (uvicorn's ClientDisconnected is an OSError):
            # routine when thousands reconnect at once and some give up waiting (S5), and a
            # traceback for each would cost the server CPU it needs for the others.
            logger.debug("socket closed by its client during %s", kind, exc_info=True)
        else:
            logger.exception("socket handler failed on %s", kind)
        try:
            if kind == "websocket.receive" and not self.closing:
                await self.send_error("server_error", "The server failed on this frame.")
            elif kind == "websocket.connect":
                await self.close(code=CLOSE_SERVER_ERROR)
        except Exception:
            logger.debug("could not answer a failed socket", exc_info=True)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route an ASGI message to its handler.

        Channels closes stale database connections before every handler, a thread hop per
        frame; the database work here runs through ``realtime.db``, which does that itself.
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
        self.released = False
        self.refused = 0  # frames refused in a row by the rate limits
        self.socket_id: str | None = None  # set while counted in the user's open sockets
        self.session_key: str | None = self.scope.get("session_key")
        self.session_task: asyncio.Future[None] | None = None
        self.session_timer: int | None = None
        self.frame_send = self.base_send
        await super().websocket_connect(message)

    async def accept_user(self) -> bool:
        """Accept the handshake, then close with 4401 unless the socket's user is logged in."""
        self.user = self.scope["user"]
        await self.accept()
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        socket_id = str(next(_socket_ids))
        if not await get_limits().socket_open(self.user.pk, socket_id):
            logger.info("user %s is past the open socket cap", self.user.pk)
            await self.close(code=CLOSE_RATE_LIMITED)
            return False
        self.socket_id = socket_id
        # The hub skips this socket for its own user's ephemeral frames (typing).
        self.user_id = self.user.pk
        # Every open socket of a logged-in user makes them online (realtime.presence).
        get_presence().user_open(self.user.pk, self.user.get_username())
        return True

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """Accept the handshake, answered with the first frame or close the socket sends.

        A connect joins its groups and reads the database before its first frame (a room
        socket's ``synced``), so the 101 response sent at once went out in a write of its own,
        a second write and a second wake-up of the client per connect. Held until the first
        frame, both leave in one write (``ops.protocols.websocket_accept_held``): a reconnect
        storm's sockets each cost the server and the client one write less (bench S5,
        docs/performance.md). The client's ``open`` now comes with its catch-up; what it is
        sent, and in what order, does not change.
        """
        if subprotocol is not None or headers:
            await super().accept(subprotocol, headers)
            return
        self.frame_send = None  # accepted: sent before the socket's first frame or close

    async def _accept_sent(self) -> None:
        """Send the held ``websocket.accept`` (``accept``) before anything else."""
        self.frame_send = self.base_send
        await super().accept()

    async def join(self, group: str) -> None:
        """Receive ``group``'s events from now on."""
        if self.released:
            return  # closed meanwhile: joining now would leave it in the hub for good
        # Noted first, so a socket released while it joins is still removed from the group.
        self.groups_joined.append(group)
        await get_hub().subscribe(group, self)

    async def join_user(self, check: bool = True) -> None:
        """Receive the user's own events (notifications, session checks) from now on.

        The session may have ended between the handshake and this join, and its check event
        passed this socket by, so it is checked once more after joining if a check may have
        (``session_checks_missed``): here in a task of its own (without holding up the
        connect), or, with ``check=False``, by the caller in the database call it makes next
        anyway (``session_valid``; the room socket does).
        """
        await self.join(user_group(self.user.pk))
        if check and await self.session_checks_missed():
            self.session_check()
        self.session_expiry_watch()

    async def session_checks_missed(self) -> bool:
        """Whether a session check may have been sent between the handshake's read of the
        session and now (``realtime.sessions.checks_mark``); ask once joined to the user's
        group."""
        mark = self.scope.get("session_checks")
        return mark is None or mark != await checks_mark()

    def session_expiry_watch(self) -> None:
        """Check again when the session may have expired: no event says so.

        A session lasts ``SESSION_COOKIE_AGE`` from its last save, which was before this socket
        opened, so it cannot outlive the socket by more than that; a session that was renewed
        meanwhile passes the check, and the next one comes an age later.
        """
        self.session_timer = _expiries().add(self, settings.SESSION_COOKIE_AGE)

    def session_expired(self) -> None:
        """A session age has passed since the last watch (called by ``_Expiries``)."""
        self.session_timer = None
        self.session_check()
        self.session_expiry_watch()

    def session_check(self, renamed: list[str] | None = None) -> None:
        """Re-check this socket's session soon; close with 4401 if it no longer logs in."""
        if renamed and self.session_key and key_digest(self.session_key) == renamed[0]:
            self.session_key = renamed[1]  # the session went on under a new key
        if self.closing:
            return
        if self.session_task is not None:
            self.session_recheck = True  # the running check may have read the old state
            return
        self.session_task = asyncio.ensure_future(self._session_verify())

    async def _session_verify(self) -> None:
        try:
            while not self.closing:
                if not await _session_valid((self.session_key, self.user.pk)):
                    self.close_soon(CLOSE_UNAUTHENTICATED)
                    return
                if not self.session_recheck:
                    return
                self.session_recheck = False  # asked again while checking: check once more
        except Exception:
            logger.exception("session check of a socket failed")
        finally:
            self.session_task = None

    def start_writer(self) -> None:
        """Write the frames queued so far, then every later one as it comes."""
        if self.writer is None and self.backlog is not None:
            self.writer = asyncio.ensure_future(self._drain(None))

    def deliver_frame(self, frame: str, seq: int | None) -> None:
        """Write or queue a frame from the hub."""
        self.enqueue(frame, seq)

    def deliver_event(self, payload: dict[str, Any]) -> None:
        """Write or queue an event from the hub rendered for this socket; subclasses override."""
        if payload.get("type") == SESSION_CHECK:
            self.session_check(payload.get("renamed"))
            return
        self.enqueue(frame_dumps(payload))

    def resync(self) -> None:
        """Recover from lost hub events; subclasses override."""

    def revoke(self, user_id: int) -> None:
        """Close this socket (4403) if it is ``user_id``'s."""
        user = self.user
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
            if self.frame_send is None:
                await self._accept_sent()
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

    async def rate_take(self, kind: str) -> None:
        """Spend a token of the user's budget for frames of ``kind`` or refuse the frame.

        The budget is the user's, shared by all their sockets; a socket that goes on sending
        while refused is closed (4429).
        """
        if await get_limits().take(self.user.pk, kind):
            self.refused = 0
            return
        self.refused += 1
        if self.refused >= settings.CHAT_RATE_CLOSE_AFTER:
            logger.warning("closing a socket of user %s that floods", self.user.pk)
            self.close_soon(CLOSE_RATE_LIMITED)
        raise ClientError("rate_limited", "You are sending too fast; this frame was not acted on.")

    async def rate_charge(self, kind: str, cost: int) -> None:
        """Charge the user's ``kind`` budget for work already done (the frames of a catch-up).

        Nothing to charge, nothing sent: a budget refills at a steady rate up to its cap, so a
        charge of 0 would leave it as it is (most reconnects missed nothing, S5)."""
        if cost > 0:
            await get_limits().take(self.user.pk, kind, cost, force=True)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Send a frame now (the held accept first)."""
        if self.frame_send is None:
            await self._accept_sent()
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def send_json(self, payload: dict[str, Any]) -> None:
        """Send one frame to this socket now."""
        await self.send(text_data=frame_dumps(payload))

    async def send_error(self, code: str, detail: str) -> None:
        """Tell this socket what was wrong with its frame."""
        await self.send_json({"type": "error", "code": code, "detail": detail})

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the socket; frames it sends after this are ignored."""
        self.closing = True
        if self.frame_send is None:
            await self._accept_sent()  # a close code needs an open socket
        await super().close(code=code, reason=reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame: parse it and hand it to ``receive_frame``."""
        if self.closing:
            return  # refused, removed or closing: nothing it sends is acted on
        if _too_big(text_data, bytes_data):
            # uvicorn (--ws-max-size) and daphne close such a socket before it reaches us when
            # they are given the same bound; this holds under any server.
            await self.close(code=CLOSE_TOO_BIG)
            return
        try:
            if text_data is None:
                raise ClientError("binary_frame", "Frames must be JSON text, not binary.")
            try:
                frame = orjson.loads(text_data)
            except orjson.JSONDecodeError:
                raise ClientError("invalid_json", "The frame is not valid JSON.") from None
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise ClientError("invalid_frame", 'A frame is a JSON object with a "type".')
            await self.rate_take(frame["type"])
            await self.receive_frame(frame)
        except ClientError as error:
            await self.send_error(error.code, error.detail)

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        """Handle one parsed frame; subclasses override."""
        raise ClientError("unknown_type", f"Unknown frame type {frame['type']!r}.")

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """The socket closed: release it, without Channels' ``aclose_old_connections``.

        That is a hop to the database thread per closing socket, which every
        call to the database thread makes anyway: on a restart, thousands of sockets close
        at once and their hops, one at a time, held the old process up for seconds (S5,
        docs/performance.md) while the new one could not start.
        """
        await self.disconnect(message.get("code", 1000))
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes: leave the hub and stop writing."""
        await self.release()

    async def release(self) -> None:
        """Leave the hub, stop writing and uncount the socket (once, however it ended)."""
        if self.released:
            return  # never connected, or released already
        self.released = True
        self.closing = True
        for task in (self.writer, self.session_task):
            if task is not None:
                task.cancel()
        if self.session_timer is not None:
            _expiries().discard(self, self.session_timer)
            self.session_timer = None
        if self.user_id is not None:  # counted online since accept_user
            user_id, self.user_id = self.user_id, None
            get_presence().user_close(user_id)
        self.backlog = None
        groups, self.groups_joined = self.groups_joined, []
        try:
            # Out of the local fan-out at once, before anything awaits; then out of the layer.
            await get_hub().unsubscribe_all(groups, self)
        finally:
            if self.socket_id is not None:
                socket_id, self.socket_id = self.socket_id, None
                await get_limits().socket_close(self.user.pk, socket_id)


class _Expiries:
    """When sockets check their sessions again: one timer per second of the event loop's clock
    for all the sockets due in it, not a timer per socket (~250 bytes each: a ``TimerHandle``,
    its bound method and a copied context; S3, docs/performance.md). A check comes at most a
    second late."""

    def __init__(self) -> None:
        self.due: dict[int, set[HubConsumer]] = {}

    def add(self, socket: HubConsumer, delay: float) -> int:
        loop = asyncio.get_running_loop()
        second = math.ceil(loop.time() + delay)
        sockets = self.due.get(second)
        if sockets is None:
            sockets = self.due[second] = set()
            loop.call_at(second, self._fire, second)
        sockets.add(socket)
        return second

    def discard(self, socket: HubConsumer, second: int) -> None:
        sockets = self.due.get(second)
        if sockets is not None:
            sockets.discard(socket)

    def _fire(self, second: int) -> None:
        for socket in self.due.pop(second, ()):
            try:
                socket.session_expired()
            except Exception:
                logger.exception("a session expiry check failed")


_expiries = per_loop(_Expiries)


def _too_big(text_data: str | None, bytes_data: bytes | None) -> bool:
    """Whether a frame is past ``CHAT_FRAME_MAX_BYTES`` (UTF-8 bytes, counted only if needed)."""
    limit = settings.CHAT_FRAME_MAX_BYTES
    if text_data is None:
        return bytes_data is not None and len(bytes_data) > limit
    if len(text_data) * 4 <= limit:
        return False  # no UTF-8 character is longer than 4 bytes
    return len(text_data) > limit or len(text_data.encode("utf-8", "surrogatepass")) > limit
