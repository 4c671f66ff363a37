"""Redis commands of many coroutines go out in one pipeline (realtime.pipelined), and each
caller gets its own replies or its own error, as if it had sent its commands alone."""

import asyncio

import pytest
from redis._parsers import _AsyncHiredisParser
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from realtime.layers import pool_create
from realtime.pipelined import SCRIPT_KEYS, Coalesced, Pipelined, zrem_pairs

from .support.redis_commands import commands_recorded
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


async def test_the_workers_redis_clients_parse_replies_with_hiredis(redis_url):
    """The channel layer, presence, rate limits and the session cache make their connections
    with ``pool_create``: they parse with hiredis. A presence tick reads another worker's whole
    hash of users, 14.6 ms of CPU at 2,500 users with redis-py's own parser, 0.8 ms with
    hiredis (docs/performance.md)."""
    pool = pool_create({"address": redis_url})
    connection = await pool.get_connection()
    try:
        assert isinstance(connection._parser, _AsyncHiredisParser)
        await connection.send_command("HSET", "p:h", *(str(i) for i in range(2000)))
        assert await connection.read_response() == 1000
        await connection.send_command("HGETALL", "p:h")
        users = await connection.read_response()
        assert len(users) == 1000 and users[b"998"] == b"999"
    finally:
        await pool.release(connection)
        await pool.disconnect()


def _counting_pipelined(redis):
    """A ``Pipelined`` and the list of every command it sends."""
    pipelined = Pipelined(lambda: redis)
    return pipelined, commands_recorded(pipelined)


async def test_a_read_asked_for_again_before_it_went_out_is_sent_once(redis_url):
    redis = Redis.from_url(redis_url)
    pipelined, sent = _counting_pipelined(redis)
    reads = Coalesced(lambda: pipelined, lambda key, _: [("GET", key)])
    await redis.set("p:mark", 7)
    replies = await asyncio.gather(*(reads.ask("p:mark") for _ in range(50)))
    assert replies == [[b"7"]] * 50
    assert sent == [("GET", "p:mark")]
    # A read asked for after that one went out is sent again, and sees what changed since.
    await redis.incr("p:mark")
    assert await reads.ask("p:mark") == [b"8"]
    assert sent == [("GET", "p:mark")] * 2
    await redis.aclose()


async def test_a_read_asked_for_while_another_is_under_way_waits_for_its_own(redis_url):
    """A caller must see a value read after it asked: one asked while the moment's read is
    already out gets the next one, which sees a write made in between."""
    redis = Redis.from_url(redis_url)
    pipelined, sent = _counting_pipelined(redis)
    reads = Coalesced(lambda: pipelined, lambda key, _: [("GET", key)])
    await redis.set("p:late", 1)
    first = asyncio.ensure_future(reads.ask("p:late"))
    for _ in range(100):  # until the first read has left for the pipeline
        if sent:
            break
        await asyncio.sleep(0)
    assert sent == [("GET", "p:late")]
    await redis.incr("p:late")
    second = await reads.ask("p:late")
    assert second == [b"2"]  # not the first read's reply, which may predate the write
    assert await first in ([b"1"], [b"2"])
    assert len(sent) == 2
    await redis.aclose()


async def test_a_cancelled_caller_leaves_the_others_their_reply(redis_url):
    redis = Redis.from_url(redis_url)
    pipelined, _ = _counting_pipelined(redis)
    reads = Coalesced(lambda: pipelined, lambda key, _: [("GET", key)])
    await redis.set("p:c", "x")
    gone = asyncio.ensure_future(reads.ask("p:c"))
    kept = asyncio.ensure_future(reads.ask("p:c"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == [b"x"]
    assert gone.cancelled()
    await redis.aclose()


async def test_items_asked_for_together_become_one_command_and_an_error_reaches_each(redis_url):
    redis = Redis.from_url(redis_url)
    pipelined, sent = _counting_pipelined(redis)
    adds = Coalesced(lambda: pipelined, lambda key, items: [("SADD", key, *items)])
    replies = await asyncio.gather(*(adds.ask("p:set", f"m{i}") for i in range(20)))
    assert replies == [[20]] * 20
    assert sent == [("SADD", "p:set", *(f"m{i}" for i in range(20)))]
    assert len(await redis.smembers("p:set")) == 20
    await redis.set("p:text", "x")
    wrong = Coalesced(lambda: pipelined, lambda key, items: [("SADD", key, *items)])
    results = await asyncio.gather(
        *(wrong.ask("p:text", i) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ResponseError) for result in results)
    await redis.aclose()


async def test_many_removals_go_out_as_a_script_call_per_chunk_and_each_takes_effect(redis_url):
    """A stopping worker's removals (its groups, its socket counts): a script call per
    ``SCRIPT_KEYS`` pairs, each pair removed and nothing else."""
    redis = Redis.from_url(redis_url)
    pipelined, sent = _counting_pipelined(redis)
    pairs = [(f"p:z{i % 40}", f"m{i}") for i in range(SCRIPT_KEYS * 2 + 34)]
    for key, member in pairs:
        await redis.zadd(key, {member: 1, f"kept-{member}": 1})
    await pipelined.execute(*zrem_pairs(pairs))
    assert [command[0] for command in sent] == ["EVAL"] * 3
    left = [m for key in {key for key, _ in pairs} for m in await redis.zrange(key, 0, -1)]
    assert sorted(left) == sorted(f"kept-{member}".encode() for _, member in pairs)
    await redis.aclose()
