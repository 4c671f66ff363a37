"""The reads of a socket's connect (realtime.db.reads_sync_to_async) run where
``database_sync_to_async`` runs them, and every caller gets its own result or exception, however
many ask at once."""

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async

from realtime import db
from realtime.db import reads_sync_to_async

# The hop checks the thread's database connection around its calls, as database_sync_to_async does.
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@reads_sync_to_async
def square(n: int) -> tuple[int, int]:
    if n < 0:
        raise ValueError(n)
    return n * n, threading.get_ident()


@database_sync_to_async
def database_thread() -> int:
    return threading.get_ident()


async def test_reads_run_on_the_database_thread_and_answer_each_caller():
    assert db._plain_thread(asyncio.get_running_loop())  # the batched path, not the fallback
    count = db.BATCH * 3 + 5  # more than one work item's batch
    results = await asyncio.gather(*(square(n) for n in range(count)))
    assert [value for value, _ in results] == [n * n for n in range(count)]
    assert {thread for _, thread in results} == {await database_thread()}
    assert threading.get_ident() != results[0][1]


async def test_an_exception_reaches_its_own_caller_only():
    results = await asyncio.gather(square(3), square(-1), square(4), return_exceptions=True)
    assert results[0][0] == 9 and results[2][0] == 16
    assert isinstance(results[1], ValueError) and results[1].args == (-1,)


async def test_a_cancelled_caller_does_not_stop_the_others():
    gate = threading.Event()

    @reads_sync_to_async
    def wait_then(n: int) -> int:
        gate.wait(5)
        return n

    first = asyncio.ensure_future(wait_then(1))
    second = asyncio.ensure_future(wait_then(2))
    await asyncio.sleep(0.05)
    first.cancel()
    gate.set()
    assert await second == 2
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await square(5))[0] == 25  # the thread serves on


async def test_a_connection_that_cannot_be_checked_fails_those_calls_and_the_thread_serves_on(
    monkeypatch,
):
    failures = [RuntimeError("database went away")]

    def close_old_connections():
        if failures:
            raise failures.pop()

    monkeypatch.setattr(db, "close_old_connections", close_old_connections)
    with pytest.raises(RuntimeError, match="went away"):
        await square(2)
    assert (await square(6))[0] == 36


calls_of_many: list[list[int]] = []


def squares(ns: list[int]) -> list[tuple[int, int]]:
    calls_of_many.append(list(ns))
    if any(n < 0 for n in ns):
        raise ValueError(ns)
    return [(n * n, threading.get_ident()) for n in ns]


square_batched = db.reads_batched(squares)


async def _queued_behind_a_busy_thread(*calls):
    """Run ``calls`` (awaitables) queued while the database thread is busy, so that they are
    taken from the queue together."""
    gate = threading.Event()
    busy = asyncio.ensure_future(reads_sync_to_async(lambda: gate.wait(5))())
    await asyncio.sleep(0.05)
    futures = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0.05)
    gate.set()
    await busy
    return await asyncio.gather(*futures, return_exceptions=True)


async def test_batched_reads_queued_together_run_as_one_call_and_answer_each_caller():
    calls_of_many.clear()
    count = db.BATCH * 2 + 3
    results = await _queued_behind_a_busy_thread(*(square_batched(n) for n in range(count)))
    assert [value for value, _ in results] == [n * n for n in range(count)]
    assert {thread for _, thread in results} == {await database_thread()}
    # One call per work item (at most BATCH calls each), with every argument queued in it.
    assert calls_of_many == [
        list(range(0, db.BATCH)),
        list(range(db.BATCH, 2 * db.BATCH)),
        list(range(2 * db.BATCH, count)),
    ]
    # Mixed with plain reads in the same work items, each still gets its own answer.
    mixed = await _queued_behind_a_busy_thread(
        *(square(n) if n % 2 else square_batched(n) for n in range(20))
    )
    assert [value for value, _ in mixed] == [n * n for n in range(20)]
    assert calls_of_many[-1] == list(range(0, 20, 2))


async def test_an_exception_of_a_batched_read_fails_the_calls_it_ran_for_only():
    calls_of_many.clear()
    results = await _queued_behind_a_busy_thread(square_batched(2), square_batched(-1), square(5))
    assert calls_of_many == [[2, -1]]
    assert all(isinstance(r, ValueError) for r in results[:2])
    assert results[2][0] == 25  # a plain read of the same work item is unaffected
    assert (await square_batched(3))[0] == 9  # and the next batch runs


def roots(ns: list[int]) -> list[Any]:
    return [db.Failed(ValueError(n)) if n < 0 else n**0.5 for n in ns]


root_batched = db.reads_batched(roots)


async def test_an_answer_failed_fails_its_own_call_only():
    results = await _queued_behind_a_busy_thread(root_batched(4), root_batched(-1), root_batched(9))
    assert results[0] == 2 and results[2] == 3
    assert isinstance(results[1], ValueError) and results[1].args == (-1,)
    with pytest.raises(ValueError):  # alone, and from a thread that is not the database's
        await root_batched(-2)
    assert await sync_to_async(async_to_sync(root_batched))(16) == 4
    with pytest.raises(ValueError):
        await sync_to_async(async_to_sync(root_batched))(-3)
