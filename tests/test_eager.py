"""realtime.eager: a coroutine runs at once, and becomes a task only when it has to wait."""

import asyncio

import pytest

from realtime import eager

pytestmark = pytest.mark.asyncio


async def test_a_coroutine_that_never_waits_finishes_in_the_callers_step():
    done = []

    async def write():
        done.append(1)

    assert eager.start(write()) is None
    assert done == [1]


async def test_a_coroutine_that_waits_continues_as_a_task_with_its_result():
    gate = asyncio.Event()
    steps = []

    async def write():
        steps.append("before")
        await gate.wait()
        steps.append("after")
        return "written"

    pending = eager.start(write())
    assert steps == ["before"]
    await asyncio.sleep(0.01)  # the rest is waiting on the gate now, not just scheduled
    assert not pending.done()
    gate.set()
    assert await pending == "written"
    assert steps == ["before", "after"]


async def test_errors_before_the_first_wait_reach_the_caller():
    async def broken():
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        eager.start(broken())


async def test_cancelling_the_rest_cancels_the_coroutine_where_it_waits():
    cleaned = []

    async def write():
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    pending = eager.start(write())
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert cleaned == [True]


async def test_errors_of_awaited_futures_are_thrown_into_the_coroutine():
    future = asyncio.get_running_loop().create_future()

    async def write():
        try:
            await future
        except KeyError:
            return "handled"

    pending = eager.start(write())
    await asyncio.sleep(0.01)
    future.set_exception(KeyError())
    assert await pending == "handled"


async def test_bare_yields_are_resumed():
    async def write():
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return 3

    assert await eager.start(write()) == 3
