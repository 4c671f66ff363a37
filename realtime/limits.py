"""Limits per user, shared by all of a user's sockets: frame rates and open sockets.

A limit per socket is no limit: one user with 40 sockets had 40 budgets. These count per user
across every socket, worker process and node: in Redis when ``REDIS_URL`` is set (one Lua script
per check, so concurrent workers cannot both spend the last token), in the process otherwise
(the embedded default runs one process). When Redis does not answer, the limits let the frame
through and log: chat keeps working through a Redis outage, as the rest of the live path does.
"""

import asyncio
import collections
import logging
import os
import time
import uuid

from django.conf import settings

from .loops import per_loop
from .pipelined import Pipelined, zrem_pairs
from .stopping import stopping

logger = logging.getLogger(__name__)

# A socket counted in Redis stays counted this long unless its process renews it, so the
# sockets of a killed process stop counting after at most this many seconds.
SOCKET_TTL = 90
SOCKET_RENEW_SECONDS = 30

# Token bucket: ``rate`` tokens a second up to ``burst``. A frame is allowed while the bucket
# holds a token, and spends ``cost`` (which may take it below zero: a sync is charged the frames
# it answered with, known only after it ran). ``force`` charges without asking.
_BUCKET_LUA = """
local rate, burst, cost, force = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local allowed = 0
if force == '1' or tokens >= 1 then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return allowed
"""

# The user's open sockets: a sorted set of socket ids scored by when they stop counting.
_SOCKET_OPEN_LUA = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

_SOCKET_RENEW_LUA = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


# The one table of per-user rate limits, keyed by frame type: the budget a frame spends and
# the settings of that budget's rate (per second) and burst. Frame types not listed are not
# limited per user.
FRAME_LIMITS: dict[str, tuple[str, str, str]] = {
    "message": ("change", "CHAT_RATE_PER_SECOND", "CHAT_RATE_BURST"),
    "edit": ("change", "CHAT_RATE_PER_SECOND", "CHAT_RATE_BURST"),
    "delete": ("change", "CHAT_RATE_PER_SECOND", "CHAT_RATE_BURST"),
    "react": ("change", "CHAT_RATE_PER_SECOND", "CHAT_RATE_BURST"),
    "sync": ("sync", "CHAT_SYNC_FRAMES_PER_SECOND", "CHAT_SYNC_FRAMES_BURST"),
    # A scroll-back page costs the sync budget by its size, as a catch-up does.
    "history": ("sync", "CHAT_SYNC_FRAMES_PER_SECOND", "CHAT_SYNC_FRAMES_BURST"),
    # Read markers have a budget of their own: reading must not eat into sending.
    "read": ("read", "CHAT_RATE_PER_SECOND", "CHAT_RATE_BURST"),
    # Typing is also throttled per socket (CHAT_TYPING_INTERVAL); this bounds a user's tabs.
    "typing": ("typing", "CHAT_RATE_PER_SECOND", "CHAT_RATE_BURST"),
}


def rate_of(kind: str) -> tuple[str, float, float] | None:
    """The budget a frame type spends and its (per second, burst); None when not limited."""
    limit = FRAME_LIMITS.get(kind)
    if limit is None:
        return None
    budget, per_second, burst = limit
    return budget, float(getattr(settings, per_second)), float(getattr(settings, burst))


class LocalLimits:
    """Limits of one process (the embedded default: one process serves every socket)."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[int, str], list[float]] = {}
        self.sockets: collections.Counter[int] = collections.Counter()

    async def take(self, user_id: int, kind: str, cost: float = 1, force: bool = False) -> bool:
        """Spend ``cost`` of the user's ``kind`` budget if it has a token (always if ``force``)."""
        rate = rate_of(kind)
        if rate is None:
            return True
        budget, per_second, burst = rate
        now = time.monotonic()
        bucket = self.buckets.get((user_id, budget))
        if bucket is None:
            if len(self.buckets) > 100_000:  # forget full buckets of users who went quiet
                self.buckets = {k: b for k, b in self.buckets.items() if b[1] > now - 60}
            bucket = self.buckets[(user_id, budget)] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * per_second)
        allowed = force or tokens >= 1
        bucket[:] = [tokens - cost if allowed else tokens, now]
        return allowed

    async def socket_open(self, user_id: int, socket_id: str) -> bool:
        """Count a new socket of the user; False (not counted) past the cap."""
        if self.sockets[user_id] >= settings.CHAT_SOCKETS_PER_USER:
            return False
        self.sockets[user_id] += 1
        return True

    async def socket_close(self, user_id: int, socket_id: str) -> None:
        """Stop counting a socket ``socket_open`` counted."""
        self.sockets[user_id] -= 1
        if self.sockets[user_id] <= 0:
            del self.sockets[user_id]

    async def stop(self) -> int:
        """Nothing outside the process to let go of."""
        return 0


class RedisLimits:
    """Limits shared by every process on the same Redis."""

    def __init__(self) -> None:
        from redis.asyncio import Redis

        from .layers import pool_create

        # The layer's pool settings, and a pool that waits for a free connection: a burst of
        # connects (a socket count each) must not fail with MaxConnectionsError.
        pool = pool_create({"address": settings.REDIS_URL, **settings.REDIS_CONNECTION})
        self.redis = Redis(connection_pool=pool)
        self.renew = self.redis.register_script(_SOCKET_RENEW_LUA)
        self.prefix = f"{settings.REDIS_PREFIX}:limit"
        self.process = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.local_sockets: dict[str, int] = {}
        self.renewer: asyncio.Task[None] | None = None
        # Rate checks and socket counts of every socket at once, in one pipeline per moment:
        # one round trip per frame or connect, each paying redis-py's per-command path, was a
        # fifth of a busy worker's event loop (docs/performance.md, "The write path").
        self.pipelined = Pipelined(lambda: self.redis)

    async def take(self, user_id: int, kind: str, cost: float = 1, force: bool = False) -> bool:
        """Spend ``cost`` of the user's ``kind`` budget if it has a token (always if ``force``)."""
        rate = rate_of(kind)
        if rate is None:
            return True
        budget, per_second, burst = rate
        key = f"{self.prefix}:rate:{budget}:{user_id}"
        args = [per_second, burst, cost, "1" if force else "0"]
        try:
            (taken,) = await self.pipelined.execute(("EVAL", _BUCKET_LUA, 1, key, *args))
        except Exception:
            logger.warning("rate limit check failed; the frame is let through", exc_info=True)
            return True
        return bool(taken)

    def _sockets_key(self, user_id: int) -> str:
        """The sorted set of the user's open sockets (every process's), scored by expiry."""
        return f"{self.prefix}:sockets:{user_id}"

    async def socket_open(self, user_id: int, socket_id: str) -> bool:
        """Count a new socket of the user; False (not counted) past the cap."""
        member = f"{self.process}:{socket_id}"
        key = self._sockets_key(user_id)
        try:
            args = [settings.CHAT_SOCKETS_PER_USER, SOCKET_TTL, member]
            (counted,) = await self.pipelined.execute(("EVAL", _SOCKET_OPEN_LUA, 1, key, *args))
            if not counted:
                return False
        except Exception:
            logger.warning("socket count failed; the socket is let in", exc_info=True)
        self.local_sockets[member] = user_id
        if self.renewer is None or self.renewer.done():
            self.renewer = asyncio.create_task(self._renew(), name="realtime-limits-renew")
        return True

    async def socket_close(self, user_id: int, socket_id: str) -> None:
        """Stop counting a socket ``socket_open`` counted."""
        if stopping():
            return  # uncounted with the process's other sockets, at once (``stop``)
        member = f"{self.process}:{socket_id}"
        self.local_sockets.pop(member, None)
        try:
            await self.pipelined.execute(("ZREM", self._sockets_key(user_id), member))
        except Exception:
            logger.warning("could not uncount a socket; it expires by itself", exc_info=True)

    async def stop(self) -> int:
        """The process stops (``realtime.stopping``): uncount every socket still counted, in
        one pipeline, and stop renewing them. Returns how many."""
        if self.renewer is not None:
            self.renewer.cancel()
        counted, self.local_sockets = self.local_sockets, {}
        if counted:
            await self.pipelined.execute(
                *zrem_pairs([(self._sockets_key(u), member) for member, u in counted.items()])
            )
        return len(counted)

    async def _renew(self) -> None:
        """Keep this process's sockets counted while they are open."""
        while True:
            await asyncio.sleep(SOCKET_RENEW_SECONDS)
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for member, user_id in tuple(self.local_sockets.items()):
                        key = self._sockets_key(user_id)
                        await self.renew(keys=[key], args=[SOCKET_TTL, member], client=pipe)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("could not renew the socket counts", exc_info=True)


def _limits_create() -> LocalLimits | RedisLimits:
    return RedisLimits() if settings.REDIS_URL else LocalLimits()


# The limits of the running event loop (one per worker process; one per test loop).
get_limits = per_loop(_limits_create)
