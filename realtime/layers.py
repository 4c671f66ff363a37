"""channels_redis' core layer with a connection pool that waits instead of failing.

redis-py's asyncio ``ConnectionPool`` raises ``MaxConnectionsError`` as soon as
``max_connections`` are in use, so a burst of joins and leaves (many sockets connecting or
closing at once) failed some of them: a failed join is an HTTP 500 on the handshake, a failed
leave a stale member that keeps receiving the group's traffic. ``BlockingConnectionPool`` makes
the caller wait for a free connection instead (``pool_timeout`` seconds at most).
"""

from typing import Any

from channels_redis.core import RedisChannelLayer as CoreRedisChannelLayer
from redis.asyncio import BlockingConnectionPool


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
