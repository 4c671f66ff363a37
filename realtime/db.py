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

``reads_sync_to_async`` runs the reads of a socket's connect for a fraction of the event loop's
time per call: a connect makes two calls, and in a reconnect storm the machinery around
``database_sync_to_async`` (a concurrent future, a copied context, a wake-up of the loop per
call) cost the loop more than the reads cost the database (S5, docs/performance.md). Calls
queue in the process; a work item on the one database thread runs what is queued, and results
go back to the loop together, one wake-up for all that are ready. (Spreading them over the
change threads on PostgreSQL made the production shape's storm slower, 16 s → 21 s: the
machine's two cores, not the database's round trips, were the limit.)
"""

import asyncio
import collections
import functools
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection, connections

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_threads: int | None = None  # the process's change threads, looked up on its first change
_executor_lock = threading.Lock()


def writer_threads(wanted: int, database: dict[str, Any]) -> int:
    """How many change threads a process runs: ``CHAT_DB_WRITERS`` (``wanted``), but fewer
    than the connections of the database's pool. Each keeps one between changes
    (``_connections_check``), and the process's database thread and HTTP requests need one
    too: as many writers as connections would leave those waiting for the pool's timeout."""
    pool = database.get("OPTIONS", {}).get("pool")
    if pool is True:
        size = 4  # psycopg_pool's default size
    elif isinstance(pool, dict):
        size = pool.get("max_size") or pool.get("min_size", 4)
    else:
        return wanted
    return max(1, min(wanted, size - 1))


def _writers() -> ThreadPoolExecutor | None:
    """The process's pool of change threads, or None when changes stay on the one thread."""
    global _executor, _threads
    if _threads is None:  # asked on every change: the database and its pool, looked up once
        postgresql = connection.vendor == "postgresql"
        _threads = (
            writer_threads(settings.CHAT_DB_WRITERS, connection.settings_dict) if postgresql else 1
        )
    if _threads <= 1:
        return None
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(_threads, thread_name_prefix="db-writer")
    return _executor


def _run(loop: asyncio.AbstractEventLoop, func: Callable[..., R], *args: Any) -> R:
    # Runs in the thread's own context (run_in_executor copies none), so Django's connection
    # for this thread is reused call after call, and never handed to another thread.
    # The event loop, as SyncToAsync records it: after-commit events go to it
    # (realtime.events) and async_to_sync in the change finds its way back.
    SyncToAsync.threadlocal.main_event_loop = loop
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
    _connections_check()
    try:
        return func(*args)
    finally:
        _connections_check()


def _connections_check() -> None:
    """``close_old_connections`` for a change thread, which keeps its connection between
    changes: the pool's ``CONN_MAX_AGE`` of 0 would hand it back after every call and take one
    again for the next, a tenth of storing a message (bench S4, docs/performance.md). A
    connection that failed and no longer answers, or is left outside autocommit, still goes
    back (Django's ``close_if_unusable_or_obsolete``); a process holds at most one per change
    thread (``writer_threads``)."""
    for conn in connections.all(initialized_only=True):
        conn.close_at = None
        conn.close_if_unusable_or_obsolete()


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


# At most this many calls per work item, so other work for a thread (changes on SQLite,
# database_sync_to_async's calls) waits behind a bounded batch, not behind a whole storm.
BATCH = 64

Outcome = tuple[asyncio.Future, Any, BaseException | None]


class _Calls:
    """The calls queued for the database thread, and the results waiting for their loops."""

    def __init__(self) -> None:
        self.queued: collections.deque[tuple[Any, ...]] = collections.deque()
        self.running = False  # while a work item is queued or running on the thread
        self.results: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        self.lock = threading.Lock()

    def call(self, loop: asyncio.AbstractEventLoop, func: Callable[[], Any]) -> asyncio.Future:
        future = loop.create_future()
        with self.lock:
            self.queued.append((loop, future, func))
            if self.running:
                return future
            self.running = True
        SyncToAsync.single_thread_executor.submit(self.run)
        return future

    def run(self) -> None:
        """On the database thread: up to ``BATCH`` queued calls, then again if more wait."""
        try:
            with self.lock:
                batch = [self.queued.popleft() for _ in range(min(BATCH, len(self.queued)))]
            try:
                close_old_connections()
                failed = None
            except Exception as exc:  # as database_sync_to_async would: the calls fail with it
                failed = exc
            together = _together(batch)
            for loop, future, func in batch:
                # As SyncToAsync records it: after-commit events go to this loop
                # (realtime.events), and async_to_sync in the call finds its way back.
                SyncToAsync.threadlocal.main_event_loop = loop
                SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
                try:
                    if failed is not None:
                        raise failed
                    if isinstance(func, _Many):
                        outcome = (future, together.answer(func), None)
                    else:
                        outcome = (future, func(), None)
                except BaseException as exc:  # handed to the awaiting coroutine
                    outcome = (future, None, exc)
                self.done(loop, outcome)
            try:
                close_old_connections()
            except Exception:
                logger.warning("could not close an unusable database connection", exc_info=True)
        finally:
            # Whatever happened above, the calls queued meanwhile get a work item.
            with self.lock:
                more = bool(self.queued)
                self.running = more
            if more:  # after the thread's other work
                SyncToAsync.single_thread_executor.submit(self.run)

    def done(self, loop: asyncio.AbstractEventLoop, outcome: Outcome) -> None:
        """Hand a result to its loop: with the others waiting there, or in a new wake-up."""
        with self.lock:
            waiting = self.results.setdefault(loop, [])
            waiting.append(outcome)
            if len(waiting) > 1:
                return
        try:
            loop.call_soon_threadsafe(self.settle, loop)
        except RuntimeError:  # the loop closed meanwhile: nobody awaits these
            with self.lock:
                self.results.pop(loop, None)

    def settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: hand every result waiting for it to its coroutine."""
        with self.lock:
            outcomes = self.results.pop(loop, ())
        for future, result, exc in outcomes:
            if future.cancelled():
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)


class _Many:
    """One argument of a call that runs once for every such call of a work item
    (``reads_batched``)."""

    __slots__ = ("argument", "many")

    def __init__(self, many: Callable[[list[Any]], list[Any]], argument: Any) -> None:
        self.many, self.argument = many, argument


class _Together:
    """The answers of a work item's ``_Many`` calls: each function runs once, for all of its
    arguments, when the first of them is reached."""

    def __init__(self, calls: list[_Many]) -> None:
        self.calls: dict[Any, list[_Many]] = {}
        for call in calls:
            self.calls.setdefault(call.many, []).append(call)
        self.answers: dict[int, Any] = {}

    def answer(self, call: _Many) -> Any:
        if id(call) not in self.answers:
            group = self.calls[call.many]
            try:
                answers = call.many([c.argument for c in group])
            except Exception as exc:  # the whole group fails with it, each caller told
                answers = [Failed(exc)] * len(group)
            self.answers.update(zip(map(id, group), answers, strict=True))
        return _raised(self.answers[id(call)])


class Failed:
    """An answer of a batched read's ``many`` that fails its own call with ``exc``
    (``reads_batched``)."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


def _raised(answer: Any) -> Any:
    if isinstance(answer, Failed):
        raise answer.exc
    return answer


def _together(batch: list[tuple[Any, ...]]) -> _Together:
    return _Together([func for _, _, func in batch if isinstance(func, _Many)])


_calls = _Calls()


def _plain_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``database_sync_to_async`` would run a call now on its one process thread (and
    not on a calling sync thread, as under ``async_to_sync`` in tests)."""
    return not (
        getattr(AsyncToSync.executors, "current", None)
        or SyncToAsync.thread_sensitive_context.get(None)
        or loop in AsyncToSync.loop_thread_executors
        or SyncToAsync.deadlock_context.get(False)
    )


def reads_sync_to_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``database_sync_to_async`` for the reads of a socket's connect: the same thread, the
    same connection handling, less of the event loop's time (see the module's docstring).
    Unlike it, the call does not run in a copy of the caller's context variables."""
    one_thread = database_sync_to_async(func)

    @functools.wraps(func)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        if not _plain_thread(loop):
            return await one_thread(*args, **kwargs)
        # A caller cancelled meanwhile (its socket closed) gets no result; the call still
        # runs, as one already handed to database_sync_to_async's thread does.
        return await _calls.call(loop, functools.partial(func, *args, **kwargs))

    return call


def reads_batched(many: Callable[[list[Any]], list[R]]) -> Callable[[Any], Awaitable[R]]:
    """``reads_sync_to_async`` of a read that takes one argument, for a function that answers
    a list of them at once (``many([a, b]) == [f(a), f(b)]``): the calls queued together run
    as one call of ``many``, e.g. one query for every handshake's user of a moment instead of
    one each (S5, docs/performance.md). An exception of ``many`` fails all of them; an answer
    ``Failed(exc)`` fails its own call only."""
    one_thread = database_sync_to_async(lambda argument: _raised(many([argument])[0]))

    @functools.wraps(many)
    async def call(argument: Any) -> R:
        loop = asyncio.get_running_loop()
        if not _plain_thread(loop):
            return await one_thread(argument)
        return await _calls.call(loop, _Many(many, argument))  # type: ignore[arg-type]

    return call
