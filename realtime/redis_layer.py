"""The Redis channel layer: channels_redis' core layer with a pool that waits and batch calls.

Imported only with REDIS_URL set (``realtime.layers`` names it lazily): the embedded default's
start-up never loads channels_redis or redis-py's asyncio client.

redis-py's asyncio ``ConnectionPool`` raises ``MaxConnectionsError`` as soon as
``max_connections`` are in use, so a burst of joins and leaves (many sockets connecting or
closing at once) failed some of them: a failed join is an HTTP 500 on the handshake, a failed
leave a stale member that keeps receiving the group's traffic. ``BlockingConnectionPool`` makes
the caller wait for a free connection instead (``pool_timeout`` seconds at most).
"""

import asyncio
import logging
import random
import secrets
import time
from typing import Any

import msgpack
from channels_redis.core import RedisChannelLayer as CoreRedisChannelLayer
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import ResponseError

from .loops import per_loop
from .pipelined import Coalesced, Pipelined, script_chunks, zrem_pairs

logger = logging.getLogger(__name__)


def pool_create(host: dict[str, Any]) -> BlockingConnectionPool:
    """A waiting connection pool for one ``hosts`` entry ({"address": url, **options})."""
    options = dict(host)
    address = options.pop("address")
    options.setdefault("timeout", options.pop("pool_timeout", 20))
    return BlockingConnectionPool.from_url(address, **options)


# One call sends a batch of group messages. KEYS: the batch's groups. ARGV: now, the group
# expiry, the message expiry, the queues' capacity, the layer's key prefix, the member left out
# ("" for none), then for every event its group's index in KEYS, its score, its random prefix
# and its message packed by msgpack, with an empty "__asgi_channel__" list last and that list's
# header byte (0x90) cut off. For every member but the one left out, in the order the stock
# ``group_send`` takes them: the queue's expired messages dropped once, then the stock capacity
# check, ZADD and EXPIRE of the message with the queue's channels appended, as
# ``_map_channel_keys_to_connection`` would have put them. The queues' keys are derived inside
# the script, which a Redis Cluster would refuse; the layer is for a single host here anyway.
_GROUP_SEND_MANY_LUA = """
local now, group_expiry, expiry = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local capacity, prefix, skip = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local function packed(s)
    local n = #s
    if n < 32 then return string.char(0xa0 + n) .. s end
    if n < 256 then return string.char(0xd9, n) .. s end
    return string.char(0xda, math.floor(n / 256), n % 256) .. s
end
local function header(n)
    if n < 16 then return string.char(0x90 + n) end
    return string.char(0xdc, math.floor(n / 256), n % 256)
end
local queues = {}
for g = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[g], 0, now - group_expiry)
    local by_key, list = {}, {}
    for _, channel in ipairs(redis.call('ZRANGE', KEYS[g], 0, -1)) do
        if channel ~= skip then
            local bang = string.find(channel, '!', 1, true)
            local key = prefix .. (bang and string.sub(channel, 1, bang) or channel)
            local queue = by_key[key]
            if not queue then
                queue = {key, {}}
                by_key[key] = queue
                list[#list + 1] = queue
            end
            local names = queue[2]
            names[#names + 1] = packed(channel)
        end
    end
    for _, queue in ipairs(list) do
        queue[2] = header(#queue[2]) .. table.concat(queue[2])
    end
    queues[g] = list
end
local cleaned, written, over = {}, 0, 0
for i = 7, #ARGV, 4 do
    local score, random, body = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    for _, queue in ipairs(queues[tonumber(ARGV[i])]) do
        local key = queue[1]
        if not cleaned[key] then
            redis.call('ZREMRANGEBYSCORE', key, 0, now - expiry)
            cleaned[key] = true
        end
        if redis.call('ZCOUNT', key, '-inf', '+inf') < capacity then
            redis.call('ZADD', key, score, random .. body .. queue[2])
            redis.call('EXPIRE', key, expiry)
            written = written + 1
        else
            over = over + 1
        end
    end
end
return {written, over}
"""
# Joins of one channel to many groups in one call. KEYS: the groups' keys. ARGV: now, the group
# expiry, the channel. For each group what the stock ``group_add`` sends: ZADD, then EXPIRE.
_GROUPS_ADD_LUA = """
for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, ARGV[1], ARGV[3])
    redis.call('EXPIRE', key, ARGV[2])
end
return #KEYS
"""
# How a message packed with an empty "__asgi_channel__" list last ends: the key, then 0x90.
_CHANNELS_LAST = msgpack.packb({"__asgi_channel__": []})[1:]


def _get_command(key: str, _: list[Any]) -> list[tuple[Any, ...]]:
    return [("GET", key)]


class RedisChannelLayer(CoreRedisChannelLayer):
    """``channels_redis.core.RedisChannelLayer`` whose pools wait for a free connection, with
    a batch send and a batch receive for the hubs (realtime.hub).

    The stock ``group_send`` takes four round trips to Redis (expire the group, read it,
    expire the member queues, the capacity-checked ZADD) and its ``receive`` four more per
    message (a cleanup script, BZPOPMIN, a backup ZADD, its removal). A process's publisher
    sends one event at a time and its hub reads one at a time, so with many small rooms these
    sequential round trips, not CPU, capped the events a process could pass on
    (docs/performance.md, "The write path"). Here a batch of events costs one round trip to
    send (a script that reads each group and writes its members' queues) and a queue's waiting
    messages one to read, whatever their number.

    The batch calls are for a single Redis host (``hosts`` of one entry) whose messages are
    msgpack, unencrypted, with one capacity for every channel (``batches``); otherwise the stock
    per-event path.
    """

    def create_pool(self, index: int) -> BlockingConnectionPool:
        host = self.hosts[index]
        if "address" not in host:
            return super().create_pool(index)
        return pool_create(host)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_score = 0.0
        # Joins, leaves and counter reads of the running loop, pipelined: after a restart each
        # worker joins a group for every room and user it has sockets of (and reads the
        # session-check counter twice per socket), and on shutdown leaves them all; sent one
        # by one they were a round trip each (S5, docs/performance.md).
        self._pipelined = per_loop(lambda: Pipelined(lambda: self.connection(0)))
        # The joins of one moment, one script call (per channel) instead of two commands each;
        # and the counter reads of one moment, one GET per counter: a reconnect storm's sockets
        # each join their user's group and read the session-check counter twice (S5,
        # docs/performance.md).
        self._joins = per_loop(lambda: Coalesced(self._pipelined, self._groups_add_commands))
        self._counter_reads = per_loop(lambda: Coalesced(self._pipelined, _get_command))
        # Whether the server has BZMPOP (Redis 7.0); found out on first use.
        self._bzmpop = True
        self._send_script: Any = None  # the batch send's script (EVALSHA, loaded on first use)
        # Whether the batch calls may be used: one Redis host, and messages the send script can
        # write (msgpack, not encrypted, every channel of the same capacity). Fixed from here
        # on, and asked for every event (realtime.events._leaves_out).
        serializer = self._serializer
        self.batches = (
            self.ring_size == 1
            and getattr(serializer, "crypter", None) is None
            and getattr(serializer, "as_bytes", None) is msgpack.packb
            and not self.channel_capacity
        )

    async def group_add(self, group: str, channel: str) -> None:
        if not self.batches:
            return await super().group_add(group, channel)
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        await self._joins().ask(channel, self._group_key(group))

    def _groups_add_commands(self, channel: str, keys: list[str]) -> list[tuple[Any, ...]]:
        """The join script's calls that add ``channel`` to the groups of ``keys``."""
        keys = list(dict.fromkeys(keys))
        now = time.time()
        return [
            ("EVAL", _GROUPS_ADD_LUA, len(chunk), *chunk, now, self.group_expiry, channel)
            for chunk in script_chunks(keys)
        ]

    async def group_discard(self, group: str, channel: str) -> None:
        if not self.batches:
            return await super().group_discard(group, channel)
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        await self._pipelined().execute(("ZREM", self._group_key(group), channel))

    async def groups_discard(self, groups: list[str], channel: str) -> None:
        """Leave every one of ``groups`` in one batch (a stopping hub's thousands of groups:
        a coroutine each cost a stopping worker ~0.1 s, S5)."""
        if not self.batches:
            await asyncio.gather(*(super().group_discard(group, channel) for group in groups))
            return
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        await self._pipelined().execute(
            *zrem_pairs([(self._group_key(group), channel) for group in groups])
        )

    def _counter_key(self, name: str) -> str:
        return f"{self.prefix}:counter:{name}"

    def _counter_start(self, key: str) -> tuple[Any, ...]:
        # A missing counter starts at a random number, not at 0: if Redis loses it (a restart,
        # an eviction) between two reads, the second can never equal the first by counting up
        # to it again.
        return ("SET", key, secrets.randbelow(2**62), "NX")

    async def counter_incr(self, name: str) -> None:
        """Move the counter ``name`` that every process on this layer shares."""
        key = self._counter_key(name)
        await self._pipelined().execute(self._counter_start(key), ("INCR", key))

    async def counter_get(self, name: str) -> bytes | None:
        """The counter's value: it differs from an earlier read if it moved in between."""
        key = self._counter_key(name)
        value = (await self._counter_reads().ask(key))[0]
        if value is None:
            value = (await self._pipelined().execute(self._counter_start(key), ("GET", key)))[1]
        return value

    def _scores(self, count: int) -> list[float]:
        # Strictly increasing, so messages of one queue keep their order: the queue is a
        # sorted set, and members of equal score would come out in byte order.
        score = max(time.time(), self._last_score + 1e-6)
        scores = [score + i * 1e-6 for i in range(count)]
        self._last_score = scores[-1] if scores else self._last_score
        return scores

    async def group_send_many(
        self, events: list[tuple[str, dict[str, Any]]], skip: str | None = None
    ) -> None:
        """``group_send`` each ``(group, message)`` in order, in one round trip, to every
        member but ``skip`` (the sending process's hub, which had them already:
        realtime.events)."""
        if not events:
            return
        groups: dict[str, int] = {}
        length = self._serializer.random_prefix_length
        args: list[Any] = []
        for (group, message), score in zip(events, self._scores(len(events)), strict=True):
            packed = msgpack.packb({**message, "__asgi_channel__": []})
            if not packed.endswith(_CHANNELS_LAST):  # a message with a key of that name
                raise ValueError("a group message may not carry __asgi_channel__")
            args += [
                groups.setdefault(group, len(groups) + 1),
                repr(score),
                random.getrandbits(8 * length).to_bytes(length, "big") if length else b"",
                packed[:-1],
            ]
        now = int(time.time())
        config = [now, self.group_expiry, int(self.expiry), self.capacity, self.prefix, skip or ""]
        keys = [self._group_key(group) for group in groups]
        connection = self.connection(0)
        if self._send_script is None:
            self._send_script = connection.register_script(_GROUP_SEND_MANY_LUA)
        written, over = await self._send_script(keys=keys, args=[*config, *args], client=connection)
        if over:
            logger.info("%s of %s queue writes over capacity", over, written + over)

    async def receive_many(self, channel: str, limit: int = 500) -> list[dict[str, Any]]:
        """The messages waiting on a process's channel (at most ``limit``), waiting for one
        if there are none; an empty list when the wait times out. One round trip on Redis 7
        (BZMPOP); before 7.0 two when the queue is empty (ZPOPMIN, then BZPOPMIN).

        Only for a channel that one task of the process reads (the hub's): unlike ``receive``
        it keeps no backup of a message between its removal and its delivery, so a reader
        cancelled in between loses it, which the hub's probe notices like any lost event.
        """
        assert "!" in channel, "receive_many reads a process-specific channel"
        key = self.prefix + self.non_local_name(channel)
        connection = self.connection(0)
        popped = None
        if self._bzmpop:
            # Redis 7: what is waiting, or the first to come, in one round trip.
            try:
                reply = await connection.bzmpop(self.brpop_timeout, 1, [key], min=True, count=limit)
            except ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                self._bzmpop = False  # Redis 6: no BZMPOP
            else:
                if reply is None:
                    return []
                popped = reply[1]
        if popped is None:
            popped = await connection.zpopmin(key, limit)
        if not popped:
            waited = await connection.bzpopmin(key, timeout=self.brpop_timeout)
            if waited is None:
                return []
            popped = [(waited[1], waited[2])]
        messages = []
        for member, _ in popped:
            message = self.deserialize(member)
            if channel in message.pop("__asgi_channel__", [channel]):
                messages.append(message)
        return messages
