"""ASGI pieces of operations: the lifespan start-up guard and the X-Served-By header."""

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from realtime.stopping import stop_signals_watch, stopped

from .guard import SeveralProcessesError, in_memory_layer_claim

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI lifespan: refuse to start where the in-memory layer would split users; on
    stopping, let go of what the sockets held outside the process in one batch
    (``realtime.stopping``).

    uvicorn stops every worker and its supervisor when one worker reports that its start-up
    failed, so ``--workers 4`` without REDIS_URL refuses to run instead of running split.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                in_memory_layer_claim()
            except SeveralProcessesError as error:
                logger.critical("%s", error)
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            except OSError as error:
                # A read-only folder must not stop the server; the system check still warns.
                logger.warning("could not check for other in-memory-layer processes: %s", error)
            # From here a stop signal lets the sockets release locally; what they held on
            # Redis is let go at once below, when the server has closed them all.
            stop_signals_watch()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stopped()
            await send({"type": "lifespan.shutdown.complete"})
            return


class ServedByMiddleware:
    """Adds ``X-Served-By: <host>:<pid>`` to responses and WebSocket handshakes when enabled."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.header = (b"x-served-by", f"{socket.gethostname()}:{os.getpid()}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: dict[str, Any]) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        return await self.app(scope, receive, send_with_header)


def served_by(app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``app`` with the X-Served-By header when CHAT_SERVED_BY_HEADER is on, else ``app`` itself.

    Decided once at start-up: a pass-through middleware would still hold a frame per socket.
    """
    return ServedByMiddleware(app) if settings.CHAT_SERVED_BY_HEADER else app
