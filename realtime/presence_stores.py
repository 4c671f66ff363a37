"""Where presence is shared: the process itself, or Redis with expiry (see realtime.presence).

On Redis each worker owns a hash (user id → username) whose key expires, and an entry in a
sorted set of live workers scored by the time its entries go stale; it rewrites both every
``CHAT_PRESENCE_REFRESH`` seconds. A worker killed with SIGKILL stops renewing, so its users
drop out after at most ``CHAT_PRESENCE_EXPIRY`` seconds.
"""

import math
import os
import socket
import time
import uuid
from typing import Any

from django.conf import settings


class MemoryStore:
    """The embedded default: this process is the whole deployment."""

    async def sync(
        self, local: dict[int, str], added: dict[int, str], removed: set[int], bump: bool
    ) -> None:
        """Nothing to share with anyone."""

    async def online(self, local: dict[int, str]) -> tuple[Any, dict[int, str]]:
        """Every online user: this process's own."""
        return None, local

    async def close(self) -> None:
        """Nothing to release."""


class RedisStore:
    """Presence in Redis: one expiring hash per worker and a sorted set of live workers."""

    def __init__(self, refresh: float, expiry: float) -> None:
        from redis.asyncio import Redis

        from .layers import pool_create

        pool = pool_create({"address": settings.REDIS_URL, **settings.REDIS_CONNECTION})
        self.redis = Redis(connection_pool=pool)
        self.refresh = refresh
        self.expiry = expiry
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        prefix = f"{settings.REDIS_PREFIX}:presence"
        self.workers_key = f"{prefix}:workers"
        self.version_key = f"{prefix}:version"
        self.hash_prefix = f"{prefix}:w:"
        self.mine = self.hash_prefix + self.worker
        self.renewed = 0.0
        self.seen: Any = None
        self.cached: dict[int, str] = {}

    async def sync(
        self, local: dict[int, str], added: dict[int, str], removed: set[int], bump: bool
    ) -> None:
        """Write this worker's changes; renew (rewrite) its whole entry when it is due.

        ``bump``: something here changed a room's list (a socket entered or left a room) even if
        no user came or went, so the other workers must read again.
        """
        now = time.time()
        renew = now - self.renewed >= self.refresh
        if not (renew or added or removed or bump):
            return
        pipe = self.redis.pipeline(transaction=True)
        if renew:
            # A full rewrite: a Redis that restarted since the last renewal has it all again.
            pipe.delete(self.mine)
            if local:
                pipe.hset(self.mine, mapping={str(k): v for k, v in local.items()})
            pipe.zadd(self.workers_key, {self.worker: now + self.expiry})
            pipe.zremrangebyscore(self.workers_key, "-inf", now)
        else:
            if removed:
                pipe.hdel(self.mine, *(str(k) for k in removed))
            if added:
                pipe.hset(self.mine, mapping={str(k): v for k, v in added.items()})
        pipe.pexpire(self.mine, math.ceil(self.expiry * 1000))
        # Tells the other workers to read the hashes again.
        pipe.incr(self.version_key)
        await pipe.execute()
        if renew:
            self.renewed = now

    async def online(self, local: dict[int, str]) -> tuple[Any, dict[int, str]]:
        """Every online user of every live worker: re-read only when something changed."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.version_key)
        pipe.zrangebyscore(self.workers_key, time.time(), "+inf")
        version, workers = await pipe.execute()
        # A worker whose entries went stale leaves the set without touching the version.
        key = (version, tuple(sorted(workers)))
        if key == self.seen:
            return key, self.cached
        pipe = self.redis.pipeline(transaction=False)
        mine = self.worker.encode()
        for worker in workers:
            if worker != mine:  # this worker's own users are at hand
                pipe.hgetall(self.hash_prefix + worker.decode())
        online = dict(local)
        for entries in await pipe.execute():
            for user_id, username in entries.items():
                online[int(user_id)] = username.decode()
        self.seen, self.cached = key, online
        return key, online

    async def close(self) -> None:
        """Remove this worker's entries (a clean shutdown; a killed worker's expire)."""
        try:
            await self.redis.zrem(self.workers_key, self.worker)
            await self.redis.delete(self.mine)
            await self.redis.incr(self.version_key)
        finally:
            await self.redis.aclose()


def store_create() -> MemoryStore | RedisStore:
    """Redis when the deployment has it (several processes), else this process."""
    if getattr(settings, "REDIS_URL", ""):
        return RedisStore(settings.CHAT_PRESENCE_REFRESH, settings.CHAT_PRESENCE_EXPIRY)
    return MemoryStore()
