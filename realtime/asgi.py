"""ASGI middleware of the real-time path."""

from collections.abc import Awaitable, Callable
from typing import Any

RAW_SEND_KEY = "realtime.send"


class RawSendMiddleware:
    """Puts the server's own ``send`` in the scope, for consumers to write frames with.

    Wrap it outside Channels' session middleware: that middleware checks the session on every
    message sent, which only matters until the handshake; frames after it need none of that.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        return await self.app({**scope, RAW_SEND_KEY: send}, receive, send)
