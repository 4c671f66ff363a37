"""The Redis layer's batch calls (realtime.layers): what the hubs' publisher and reader use.

A batch must be what the same events sent one by one would be: every member of each group
gets each event once, in the order sent, and the stock calls still read what a batch wrote.
"""

import asyncio
import time

import pytest

from realtime.layers import RedisChannelLayer

from .support.redis_commands import commands_recorded
from .support.services import redis_server


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as server:
        yield server.url


def _layer(url: str) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[{"address": url}], prefix="batch-test", capacity=10_000)


async def _read_all(layer: RedisChannelLayer, channel: str, count: int) -> list[dict]:
    got: list[dict] = []
    while len(got) < count:
        got += await asyncio.wait_for(layer.receive_many(channel, limit=7), 5)
    return got


async def test_a_batch_reaches_every_member_once_in_the_order_sent(redis_url):
    # Two processes' hubs: a layer each (a process has one hub, so one channel per layer).
    layer, other = _layer(redis_url), _layer(redis_url)
    first, second = await layer.new_channel("hub."), await other.new_channel("hub.")
    await layer.group_add("room-1", first)
    await other.group_add("room-1", second)
    await layer.group_add("room-2", first)
    events = [(f"room-{1 + i % 2}", {"type": "hub.frame", "seq": i}) for i in range(60)]
    await layer.group_send_many(events)
    # Two batches back to back keep their order too (scores strictly increase).
    await layer.group_send_many([("room-1", {"type": "hub.frame", "seq": 60})])
    got_first = await _read_all(layer, first, 61)
    got_second = await _read_all(other, second, 31)
    assert [m["seq"] for m in got_first] == list(range(61))
    assert [m["seq"] for m in got_second] == [*range(0, 60, 2), 60]
    await layer.flush()


async def test_a_batch_to_groups_without_members_sends_nothing_and_fails_nothing(redis_url):
    layer = _layer(redis_url)
    channel = await layer.new_channel("hub.")
    await layer.group_send_many([("room-empty", {"type": "hub.frame", "seq": 1})])
    await layer.send(channel, {"type": "hub.probe", "n": 1})
    assert await layer.receive_many(channel) == [{"type": "hub.probe", "n": 1}]
    await layer.flush()


async def test_stock_receive_reads_what_a_batch_wrote(redis_url):
    layer = _layer(redis_url)
    channel = await layer.new_channel("hub.")
    await layer.group_add("room-3", channel)
    await layer.group_send_many([("room-3", {"type": "hub.frame", "seq": 5})])
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message == {"type": "hub.frame", "seq": 5}
    await layer.flush()


async def test_channels_sharing_a_queue_each_get_a_batch_message_once_from_stock_receive(
    redis_url,
):
    """Channels of one process share a queue key (``name!...``); the script writes one message
    per queue that names them all, as the stock send does (here 17: the list's longer header)."""
    layer = _layer(redis_url)
    channels = [await layer.new_channel("local.") for _ in range(17)]
    for channel in channels:
        await layer.group_add("room-shared", channel)
    await layer.group_send_many([("room-shared", {"type": "hub.frame", "seq": 9})])
    for channel in channels:
        assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "hub.frame", "seq": 9}
    await layer.flush()


async def test_a_full_queue_drops_the_batch_messages_over_capacity_as_the_stock_send_does(
    redis_url,
):
    layer = RedisChannelLayer(hosts=[{"address": redis_url}], prefix="batch-full", capacity=3)
    channel = await layer.new_channel("hub.")
    await layer.group_add("room-full", channel)
    await layer.group_send_many([("room-full", {"type": "hub.frame", "seq": i}) for i in range(5)])
    assert [m["seq"] for m in await layer.receive_many(channel)] == [0, 1, 2]
    await layer.flush()


async def test_a_batch_after_redis_forgot_the_script_loads_it_again(redis_url):
    layer = _layer(redis_url)
    channel = await layer.new_channel("hub.")
    await layer.group_add("room-8", channel)
    await layer.group_send_many([("room-8", {"type": "hub.frame", "seq": 1})])
    await layer.connection(0).script_flush()  # as a Redis restart would
    await layer.group_send_many([("room-8", {"type": "hub.frame", "seq": 2})])
    assert [m["seq"] for m in await _read_all(layer, channel, 2)] == [1, 2]
    await layer.flush()


@pytest.mark.parametrize(
    "options",
    [
        {"symmetric_encryption_keys": ["a secret of the deployment"]},
        {"channel_capacity": {"hub.*": 50}},
        {"serializer_format": "json"},
    ],
    ids=["encrypted", "capacity-per-channel", "json"],
)
async def test_a_layer_the_batch_script_cannot_write_for_uses_the_stock_calls(redis_url, options):
    """The script writes msgpack, unencrypted, with one capacity: other layers leave the
    publisher on the stock per-event ``group_send`` (realtime.events._leaves_out)."""
    from realtime.events import _leaves_out

    layer = RedisChannelLayer(hosts=[{"address": redis_url}], prefix="batch-stock", **options)
    assert layer.batches is False and not _leaves_out(layer)
    channel = await layer.new_channel("hub.")
    await layer.group_add("room-9", channel)
    await layer.group_send("room-9", {"type": "hub.frame", "seq": 1})
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "hub.frame", "seq": 1}
    await layer.flush()


async def test_joins_and_leaves_made_at_once_go_out_together_and_each_takes_effect(redis_url):
    layer = _layer(redis_url)
    channel = await layer.new_channel("hub.")
    groups = [f"many-{i}" for i in range(300)]
    await asyncio.gather(*(layer.group_add(group, channel) for group in groups))
    redis = layer.connection(0)
    for group in groups[:3] + groups[-3:]:
        key = layer._group_key(group)
        assert await redis.zscore(key, channel) is not None
        assert 0 < await redis.ttl(key) <= layer.group_expiry
    await layer.group_send_many([(group, {"type": "hub.frame", "g": group}) for group in groups])
    assert [m["g"] for m in await _read_all(layer, channel, 300)] == groups
    await asyncio.gather(*(layer.group_discard(group, channel) for group in groups[::2]))
    await layer.group_send_many([(group, {"type": "hub.frame", "g": group}) for group in groups])
    assert [m["g"] for m in await _read_all(layer, channel, 150)] == groups[1::2]
    await layer.flush()


async def test_a_redis_without_bzmpop_is_read_the_older_way_with_nothing_lost():
    """Redis before 7.0 has no BZMPOP (here a 7.x with the command renamed away): the reader
    falls back to ZPOPMIN and BZPOPMIN, and gets everything, in order."""
    with redis_server("--rename-command", "BZMPOP", "") as server:
        layer = _layer(server.url)
        channel = await layer.new_channel("hub.")
        await layer.group_add("room-6", channel)
        await layer.group_send_many([("room-6", {"type": "hub.frame", "seq": i}) for i in range(3)])
        assert [m["seq"] for m in await _read_all(layer, channel, 3)] == [0, 1, 2]
        assert layer._bzmpop is False
        # An empty queue: the reader waits for the next message and gets it.
        reading = asyncio.ensure_future(layer.receive_many(channel))
        await asyncio.sleep(0.2)
        await layer.group_send_many([("room-6", {"type": "hub.frame", "seq": 3})])
        assert [m["seq"] for m in await asyncio.wait_for(reading, 5)] == [3]
        await layer.flush()


async def test_the_reader_waits_on_an_empty_queue_and_wakes_with_what_came(redis_url):
    layer = _layer(redis_url)
    channel = await layer.new_channel("hub.")
    await layer.group_add("room-7", channel)
    reading = asyncio.ensure_future(layer.receive_many(channel))
    await asyncio.sleep(0.2)
    assert not reading.done()
    await layer.group_send_many([("room-7", {"type": "hub.frame", "seq": i}) for i in range(2)])
    got = await asyncio.wait_for(reading, 5)
    got += await _read_all(layer, channel, 2 - len(got)) if len(got) < 2 else []
    assert [m["seq"] for m in got] == [0, 1]
    assert layer._bzmpop is True
    await layer.flush()


async def test_joins_made_at_once_are_one_script_call_per_chunk_as_the_stock_join_leaves_them(
    redis_url,
):
    """A reconnect storm's joins (and a hub's periodic rejoin of all its groups) go out as a
    script over many groups, not ZADD and EXPIRE each: the groups end as the stock
    ``group_add`` leaves them (a member scored by the time it joined, the group's expiry), so
    the stock ``group_send`` reaches them."""
    from realtime.pipelined import SCRIPT_KEYS

    layer = _layer(redis_url)
    channel = await layer.new_channel("hub.")
    sent = commands_recorded(layer._pipelined())
    groups = [f"chunked-{i}" for i in range(SCRIPT_KEYS * 2 + 7)]
    before = time.time()
    await asyncio.gather(*(layer.group_add(group, channel) for group in [*groups, groups[0]]))
    assert [command[0] for command in sent] == ["EVAL"] * 3
    assert sum(command[2] for command in sent) == len(groups)  # each group once
    redis = layer.connection(0)
    for group in (groups[0], groups[SCRIPT_KEYS], groups[-1]):
        key = layer._group_key(group)
        assert before - 1 < await redis.zscore(key, channel) < time.time() + 1
        assert 0 < await redis.ttl(key) <= layer.group_expiry
    stock = RedisChannelLayer(hosts=[{"address": redis_url}], prefix="batch-test")
    await stock.group_send(groups[-1], {"type": "hub.frame", "seq": 1})
    assert await _read_all(layer, channel, 1) == [{"type": "hub.frame", "seq": 1}]
    await layer.flush()
