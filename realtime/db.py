"""Where a socket's changes run: several at once on PostgreSQL, one at a time on SQLite.

``database_sync_to_async`` runs every call of a process on one thread (``thread_sensitive``),
so a process stores one message at a time and waits for each of PostgreSQL's round trips:
with many small rooms the database thread, not the CPU, was the limit (docs/performance.md,
"The write path"). ``changes_sync_to_async`` runs a change on one of ``CHAT_DB_WRITERS``
threads instead, each with its own connection (from the process's pool). Changes of one room
still queue on the room's row lock (``rooms.services._seq_take``) and get consecutive seqs;
their events can leave two threads out of order, which the hub already puts back in seq order
(``realtime.hub``, as for two workers). SQLite takes one writer at a time whatever the threads,
so there the change stays on the one database thread.
"""

import asyncio
import functools
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _writers() -> ThreadPoolExecutor | None:
    """The process's pool of change threads, or None when changes stay on the one thread."""
    global _executor
    threads = settings.CHAT_DB_WRITERS
    if threads <= 1 or connection.vendor != "postgresql":
        return None
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(threads, thread_name_prefix="db-writer")
    return _executor


def _run(loop: asyncio.AbstractEventLoop, func: Callable[..., R], *args: Any) -> R:
    # Runs in the thread's own context (run_in_executor copies none), so Django's connection
    # for this thread is reused call after call, and never handed to another thread.
    # The event loop, as SyncToAsync records it: after-commit events go to it
    # (realtime.events) and async_to_sync in the change finds its way back.
    SyncToAsync.threadlocal.main_event_loop = loop
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
    close_old_connections()
    try:
        return func(*args)
    finally:
        close_old_connections()


def changes_sync_to_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``database_sync_to_async`` for a change's transaction (see the module's docstring)."""
    one_thread = database_sync_to_async(func)

    @functools.wraps(func)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        executor = _writers()
        if executor is None:
            return await one_thread(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            executor, _run, loop, functools.partial(func, *args, **kwargs)
        )

    return call
