"""Start a coroutine at once, in the caller's step, and only make a task if it has to wait.

Writing a frame to a socket almost never waits (only when the socket's buffers are full), so
the hub runs each write synchronously instead of paying for a task per socket per message.
This is what Python 3.12's ``asyncio.eager_task_factory`` does; we run on 3.11.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> "asyncio.Future[T] | None":
    """Run ``coro`` until it first waits; None if it finished, else a task for the rest.

    Exceptions raised before the first wait propagate to the caller.
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    rest = asyncio.ensure_future(_resume(coro, waiting_on))
    # A task cancelled before its first step never runs _resume: close the coroutine then, so
    # its cleanup (finally blocks) still runs where it waits. Closing a finished one is a no-op.
    rest.add_done_callback(lambda task: coro.close() if task.cancelled() else None)
    return rest


async def _resume(coro: Coroutine[Any, Any, T], waiting_on: Any) -> T:
    """Drive a started coroutine the way a Task would: wait for what it yielded, resume it."""
    while True:
        try:
            if waiting_on is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            else:
                # The coroutine yielded this future to a task, which would clear the flag before
                # waiting on it (asyncio.Task.__step does); await refuses a future still flagged.
                waiting_on._asyncio_future_blocking = False
                await waiting_on
        except BaseException as exc:  # cancelled or failed: the coroutine decides what to do
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting_on = coro.send(None)
            except StopIteration as stop:
                return stop.value
