"""The Redis channel layer: channels_redis' core layer with a pool that waits and batch calls.

Imported only with REDIS_URL set (``realtime.layers`` names it lazily): the embedded default's
start-up never loads channels_redis or redis-py's asyncio client.

redis-py's asyncio ``ConnectionPool`` raises ``MaxConnectionsError`` as soon as
``max_connections`` are in use, so a burst of joins and leaves (many sockets connecting or
closing at once) failed some of them: a failed join is an HTTP 500 on the handshake, a failed
leave a stale member that keeps receiving the group's traffic. ``BlockingConnectionPool`` makes
the caller wait for a free connection instead (``pool_timeout`` seconds at most).
"""

import logging
import secrets
import time
from typing import Any

from channels_redis.core import RedisChannelLayer as CoreRedisChannelLayer
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import ResponseError

from .loops import per_loop
from .pipelined import Pipelined

logger = logging.getLogger(__name__)


def pool_create(host: dict[str, Any]) -> BlockingConnectionPool:
    """A waiting connection pool for one ``hosts`` entry ({"address": url, **options})."""
    options = dict(host)
    address = options.pop("address")
    options.setdefault("timeout", options.pop("pool_timeout", 20))
    return BlockingConnectionPool.from_url(address, **options)


# One call stores a batch of group messages: for every (channel key, message, capacity, score)
# the stock layer's capacity check and ZADD, in the batch's order.
_GROUP_SEND_MANY_LUA = """
local n = #KEYS
local expiry = ARGV[3 * n + 1]
local over = 0
for i = 1, n do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], ARGV[2 * n + i], ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over = over + 1
    end
end
return over
"""


class RedisChannelLayer(CoreRedisChannelLayer):
    """``channels_redis.core.RedisChannelLayer`` whose pools wait for a free connection, with
    a batch send and a batch receive for the hubs (realtime.hub).

    The stock ``group_send`` takes four round trips to Redis (expire the group, read it,
    expire the member queues, the capacity-checked ZADD) and its ``receive`` four more per
    message (a cleanup script, BZPOPMIN, a backup ZADD, its removal). A process's publisher
    sends one event at a time and its hub reads one at a time, so with many small rooms these
    sequential round trips, not CPU, capped the events a process could pass on
    (docs/performance.md, "The write path"). Here a batch of events costs two round trips to
    send and a queue's waiting messages one to read, whatever their number.

    Single Redis host only (``hosts`` of one entry); otherwise the stock per-event path.
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
        # session-check counter twice per socket), and on shutdown leaves them all, at two
        # round trips (ZADD, EXPIRE) and one (ZREM) each (S5, docs/performance.md).
        self._pipelined = per_loop(lambda: Pipelined(lambda: self.connection(0)))
        # Whether the server has BZMPOP (Redis 7.0); found out on first use.
        self._bzmpop = True

    async def group_add(self, group: str, channel: str) -> None:
        if not self.batches:
            return await super().group_add(group, channel)
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        key = self._group_key(group)
        await self._pipelined().execute(
            ("ZADD", key, time.time(), channel), ("EXPIRE", key, self.group_expiry)
        )

    async def group_discard(self, group: str, channel: str) -> None:
        if not self.batches:
            return await super().group_discard(group, channel)
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        await self._pipelined().execute(("ZREM", self._group_key(group), channel))

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
        value = (await self._pipelined().execute(("GET", key)))[0]
        if value is None:
            value = (await self._pipelined().execute(self._counter_start(key), ("GET", key)))[1]
        return value

    @property
    def batches(self) -> bool:
        """Whether the batch calls may be used (one Redis host)."""
        return self.ring_size == 1

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
        """``group_send`` each ``(group, message)`` in order, in two round trips, to every
        member but ``skip`` (the sending process's hub, which had them already:
        realtime.events)."""
        connection = self.connection(0)
        now = int(time.time())
        groups = list(dict.fromkeys(group for group, _ in events))
        pipe = connection.pipeline(transaction=False)
        for group in groups:
            key = self._group_key(group)
            pipe.zremrangebyscore(key, min=0, max=now - self.group_expiry)
            pipe.zrange(key, 0, -1)
        replies = await pipe.execute()
        members = {
            group: [
                channel
                for channel in (name.decode("utf8") for name in replies[2 * i + 1])
                if channel != skip
            ]
            for i, group in enumerate(groups)
        }
        keys: list[str] = []
        messages: list[bytes] = []
        capacities: list[int] = []
        for group, message in events:
            _, key_messages, key_capacities = self._map_channel_keys_to_connection(
                members[group], message
            )
            for key, serialized in key_messages.items():
                keys.append(key)
                messages.append(serialized)
                capacities.append(key_capacities[key])
        if not keys:
            return
        pipe = connection.pipeline(transaction=False)
        for key in dict.fromkeys(keys):
            pipe.zremrangebyscore(key, min=0, max=now - int(self.expiry))
        args = [*messages, *capacities, *self._scores(len(keys)), self.expiry]
        pipe.eval(_GROUP_SEND_MANY_LUA, len(keys), *keys, *args)
        over = (await pipe.execute())[-1]
        if over:
            logger.info("%s of %s queue writes over capacity", over, len(keys))

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
