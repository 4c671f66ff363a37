"""Redis commands of many coroutines go out in one pipeline (realtime.pipelined), and each
caller gets its own replies or its own error, as if it had sent its commands alone."""

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from realtime.pipelined import Pipelined

from .support.services import redis_server

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as server:
        yield server.url


class CountingRedis(Redis):
    """Counts the pipelines (round trips) it is asked to send."""

    sent = 0

    def pipeline(self, *args, **kwargs):
        CountingRedis.sent += 1
        return super().pipeline(*args, **kwargs)


async def test_commands_asked_for_at_once_share_one_round_trip(redis_url):
    redis = CountingRedis.from_url(redis_url)
    pipelined = Pipelined(lambda: redis)
    CountingRedis.sent = 0
    replies = await asyncio.gather(
        *(pipelined.execute(("INCRBY", "p:n", i), ("GET", "p:n")) for i in range(1, 101))
    )
    assert CountingRedis.sent == 1
    totals = [int(get) for _, get in replies]
    assert totals == sorted(totals) and totals[-1] == sum(range(1, 101))
    assert [incr for incr, _ in replies] == totals  # each caller's own replies
    await redis.aclose()


async def test_an_error_reaches_only_its_caller_and_later_commands_go_out(redis_url):
    redis = Redis.from_url(redis_url)
    pipelined = Pipelined(lambda: redis)
    await redis.set("p:text", "x")
    good, bad = await asyncio.gather(
        pipelined.execute(("SET", "p:a", "1")),
        pipelined.execute(("INCR", "p:text")),
        return_exceptions=True,
    )
    assert good == [True]
    assert isinstance(bad, ResponseError)
    assert await pipelined.execute(("GET", "p:a")) == [b"1"]
    await redis.aclose()


async def test_a_dead_connection_fails_every_waiting_caller(redis_url):
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    pipelined = Pipelined(lambda: redis)
    results = await asyncio.gather(
        *(pipelined.execute(("PING",)) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, Exception) for result in results)
    await redis.aclose()
