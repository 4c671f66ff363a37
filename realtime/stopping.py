"""A server process that is stopping lets go of its sockets' shared state in one batch.

When the ASGI server stops (SIGTERM or SIGINT: a deploy's restart, Ctrl-C), it closes every
socket at once and waits for each to finish before the process exits; the new process cannot
serve before then. Each socket, released on its own, left its groups and uncounted itself on
Redis with awaits of its own: releasing a worker's 2,500 sockets took ~0.85 s of its ~1.15 s
shutdown (S5's restart, docs/performance.md), all of it in the dead window every client waits
out. Once a stop signal has arrived, a socket's release does only its local part (the hub's
fan-out, its tasks, presence), and what the sockets held outside the process (the hub's group
memberships, the socket counts) is let go together when the server's lifespan ends
(``stopped``, from ``ops.asgi.lifespan``), after every socket has been released.

Only a server that runs the ASGI lifespan (uvicorn) notes the signal, so where nothing would
call ``stopped`` (a server without lifespan) every release stays complete on its own. A
process killed before its lifespan ends loses nothing that a crash would not: memberships and
counts expire in Redis by themselves, as after kill -9.
"""

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

# The signals an ASGI server stops on (uvicorn's ``HANDLED_SIGNALS``).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_stopping = False


def stopping() -> bool:
    """Whether a stop signal has arrived: releases leave the shared state to ``stopped``."""
    return _stopping


def stop_signals_watch() -> bool:
    """Note a stop signal before the server's own handler gets it (call from the lifespan's
    start-up, where the server has installed that handler). Returns whether it watches.

    Only a server's own handler is wrapped: a signal it does not handle (the default action, or
    Python's KeyboardInterrupt for SIGINT) stays as it is, and off the main thread nothing can
    be installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    watching = False
    for number in STOP_SIGNALS:
        handler = signal.getsignal(number)
        if getattr(handler, "stop_noted", False):
            watching = True
            continue
        if not callable(handler) or handler is signal.default_int_handler:
            continue  # not the server's: Python's own (KeyboardInterrupt) or the default action
        signal.signal(number, _noting(handler))
        watching = True
    return watching


def _noting(handler: Any) -> Any:
    def noted(number: int, frame: FrameType | None) -> None:
        global _stopping
        _stopping = True
        handler(number, frame)

    noted.stop_noted = True  # type: ignore[attr-defined]
    return noted


async def stopped() -> None:
    """Every socket of this event loop is released: leave the hub's remaining groups and
    uncount the remaining sockets, each in one batch."""
    from .hub import get_hub
    from .limits import get_limits

    async def let_go(name: str, holder: Any) -> int:
        try:
            return 0 if holder is None else await holder.stop()
        except Exception:
            logger.warning("could not let go of the %s; they expire", name, exc_info=True)
            return 0

    # Both at once: their commands go out in the same moment's pipelines (realtime.pipelined).
    counts = await asyncio.gather(
        let_go("groups", get_hub.existing()), let_go("socket counts", get_limits.existing())
    )
    logger.info("stopped: let go of %d groups and %d socket counts at once", *counts)
