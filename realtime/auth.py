"""Who a socket belongs to: the session cookie's user, resolved once during the handshake."""

from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie

from .db import reads_batched
from .session_cache import session_cached
from .sessions import checks_mark, session_data_users, sessions_users

# The same rule as the re-checks after the handshake (realtime.sessions), Django's own: on a
# session read from the cache on the event loop, or on one the database thread reads; the
# handshakes waiting for the database thread at one moment load their users in one query.
_session_user = reads_batched(sessions_users)
_session_data_user = reads_batched(session_data_users)


class SessionAuthMiddleware:
    """Puts ``user`` in the scope from the session cookie, as Channels' ``AuthMiddlewareStack``
    does, in one step.

    That stack nests three middlewares, each keeping its own copy of the scope and a coroutine
    frame for the socket's whole life, plus a wrapper around ``send`` that checks the session
    on every frame sent so it can set a cookie. A socket has no cookie to set after the
    handshake and never changes the session, so none of that is needed: this saves memory on
    every idle connection and time on every delivery (docs/performance.md).
    ``scope["user"]`` is the user itself (or ``AnonymousUser``), not a lazy proxy.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        user, session_key, mark = await self._resolve(scope)
        # The session is not kept: sockets never write it, and it would stay in memory for
        # the socket's whole life. Its key is, so the socket can check later that the session
        # still exists and still logs the user in (realtime.sessions). Resolved in a coroutine
        # of its own so that its locals (the cookies, the decoded session) are freed now, not
        # held by this frame for as long as the socket is open (S3, docs/performance.md).
        served = self.app(
            {**scope, "user": user, "session_key": session_key, "session_checks": mark},
            receive,
            send,
        )
        # This frame stays suspended for the socket's whole life: it keeps no scope of its own
        # (the routers pass the consumer a copy with its ``url_route``; ~460 bytes, S3).
        del scope, user
        return await served

    async def _resolve(self, scope: dict[str, Any]) -> tuple[Any, str | None, Any]:
        """``(user, session_key, mark)``: the mark of session checks (``checks_mark``) is taken
        before the session is read, so a check sent after it moves it and the socket reads its
        session again once it has joined its user's group; a socket without a session cookie
        takes none (no Redis read for an anonymous connect)."""
        cookie = b""
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                cookie = value
                break
        session_key = parse_cookie(cookie.decode("latin1")).get(settings.SESSION_COOKIE_NAME)
        if not session_key:
            return AnonymousUser(), None, None
        mark = await checks_mark()
        data = await session_cached(session_key)  # None: not in the cache, or no such cache
        if data is not None:
            user = await _session_data_user(data)
        else:
            user = await _session_user(session_key)
        if user is None:
            return AnonymousUser(), None, None
        return user, session_key, mark
