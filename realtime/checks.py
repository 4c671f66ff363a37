"""System checks for settings that would let sockets outlive their sessions."""

from typing import Any

from django.conf import settings
from django.core import checks

SOCKETS = "realtime.sessions.SocketSessionMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"


def socket_session_middleware(**kwargs: Any) -> list[checks.CheckMessage]:
    """The middleware that tells sockets to re-check must wrap the one that saves sessions."""
    middleware = list(settings.MIDDLEWARE)
    if SOCKETS in middleware and (
        SESSIONS not in middleware or middleware.index(SOCKETS) < middleware.index(SESSIONS)
    ):
        return []
    return [
        checks.Error(
            f"{SOCKETS} must be in MIDDLEWARE, before {SESSIONS}.",
            hint="Without it, sockets stay open after a logout or a password change made in a "
            "request; after SessionMiddleware, the check of a password change would run before "
            "the new session is saved and close the session Django keeps.",
            id="realtime.E001",
        )
    ]


def register_all() -> None:
    """Register this app's checks (called from ``RealtimeConfig.ready``)."""
    checks.register(socket_session_middleware, checks.Tags.security)
