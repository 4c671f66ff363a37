"""Channel layers: channels_redis' core layer with a pool that waits, and a leaner in-memory one.

The Redis layer:

redis-py's asyncio ``ConnectionPool`` raises ``MaxConnectionsError`` as soon as
``max_connections`` are in use, so a burst of joins and leaves (many sockets connecting or
closing at once) failed some of them: a failed join is an HTTP 500 on the handshake, a failed
leave a stale member that keeps receiving the group's traffic. ``BlockingConnectionPool`` makes
the caller wait for a free connection instead (``pool_timeout`` seconds at most).
"""

import asyncio
import logging
import time
from typing import Any

import channels.exceptions
import channels.layers
from channels_redis.core import RedisChannelLayer as CoreRedisChannelLayer
from redis.asyncio import BlockingConnectionPool

logger = logging.getLogger(__name__)


def pool_create(host: dict[str, Any]) -> BlockingConnectionPool:
    """A waiting connection pool for one ``hosts`` entry ({"address": url, **options})."""
    options = dict(host)
    address = options.pop("address")
    options.setdefault("timeout", options.pop("pool_timeout", 20))
    return BlockingConnectionPool.from_url(address, **options)


class RedisChannelLayer(CoreRedisChannelLayer):
    """``channels_redis.core.RedisChannelLayer`` whose pools wait for a free connection."""

    def create_pool(self, index: int) -> BlockingConnectionPool:
        host = self.hosts[index]
        if "address" not in host:
            return super().create_pool(index)
        return pool_create(host)


class InMemoryChannelLayer(channels.layers.InMemoryChannelLayer):
    """Channels' in-memory layer without its per-message costs, for one process.

    The stock layer scans every channel and every group member for expired entries on each
    send and receive, deep-copies each message, and makes a task per group member: its cost
    grew with the number of groups (a room and a user group per socket here). This one
    expires on a timer, at most once a second, and passes messages on as they are: events
    are built fresh for each send and never changed by their receivers (realtime.hub).
    """

    CLEAN_EVERY = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cleaned = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned >= self.CLEAN_EVERY:
            self._cleaned = now
            super()._clean_expired()

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Put a message on a channel's queue (ChannelFull when it is at capacity)."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, message))
        except asyncio.QueueFull:
            raise channels.exceptions.ChannelFull(channel) from None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send to each member in turn; a full member misses it, as with the stock layer."""
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in tuple(self.groups.get(group, ())):
            try:
                await self.send(channel, message)
            except channels.exceptions.ChannelFull:
                logger.warning("channel %s is full: it misses a message of %s", channel, group)
