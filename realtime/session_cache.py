"""A socket's session read from the session cache on the event loop, not the database thread.

With ``cached_db`` sessions on Redis (the production settings) Django's own read at a handshake
is a blocking Redis ``GET`` from redis-py's sync client on the process's one database thread,
one connect after another: in a reconnect storm those round trips, in series with the user's
and ``_opened``'s queries, were the tail of every socket's catch-up (S5, docs/performance.md).
Here the handshake reads the same cache entry, the same key and encoding as Django's
``cached_db.SessionStore.load``, through a pipelined asyncio client, so the reads of every
socket connecting at that moment go out in one round trip. What the entry says is then judged
by the one rule (``realtime.sessions.session_data_user``) on the database thread, which loads
the user.

Nothing else changes: a session that is not in the cache (never cached, evicted, logged out:
``flush`` deletes the entry with the row) or a cache that cannot be read this way (another
engine or cache backend, a custom serializer, Redis failing) gives None, and the handshake
reads the session as Django does, database included.
"""

import functools
import logging
import re
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends import cached_db
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisSerializer
from django.core.signals import setting_changed
from django.dispatch import receiver

from .loops import per_loop
from .pipelined import Pipelined

logger = logging.getLogger(__name__)

# Django's session keys (``get_random_string(32, VALID_KEY_CHARS)``); any other cookie value
# takes Django's own path, with its validation.
_KEY = re.compile(r"[a-z0-9]{32}")
# redis-py client options of Django's RedisCache that are not connection-pool options.
_NOT_POOL = {"serializer", "parser_class", "pool_class"}


@functools.cache
def _readable() -> tuple[Any, str, dict[str, Any]] | None:
    """``(cache, location, pool options)`` when the session engine is ``cached_db`` on
    Django's Redis cache with its default serializer and one server; else None."""
    engine = import_module(settings.SESSION_ENGINE)
    if not issubclass(engine.SessionStore, cached_db.SessionStore):
        return None
    cache = caches[settings.SESSION_CACHE_ALIAS]
    config = settings.CACHES[settings.SESSION_CACHE_ALIAS]
    location = config.get("LOCATION")
    if isinstance(location, (list, tuple)):
        location = location[0] if len(location) == 1 else None
    if isinstance(location, str) and re.search("[;,]", location):
        location = None  # several servers: Django reads from any but the first
    options = dict(config.get("OPTIONS") or {})
    if type(cache) is not RedisCache or not location or _NOT_POOL & options.keys():
        return None
    return cache, location, options


def _client_create() -> Pipelined:
    # Imported here: the embedded default (no Redis) never loads redis-py's asyncio client
    # and channels_redis, ~50 ms of every start-up (S5's restart).
    import redis.asyncio

    from .layers import pool_create

    _, location, options = _readable()  # type: ignore[misc]
    client = redis.asyncio.Redis(connection_pool=pool_create({"address": location, **options}))
    return Pipelined(lambda: client)


_pipelined = per_loop(_client_create)
_serializer = RedisSerializer()


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: Any) -> None:
    """Tests change the engine and the cache: read the settings again, with new clients."""
    global _pipelined
    if setting in {"SESSION_ENGINE", "SESSION_CACHE_ALIAS", "CACHES"}:
        _readable.cache_clear()
        _pipelined = per_loop(_client_create)


async def session_cached(session_key: str) -> dict[str, Any] | None:
    """The session's data as the ``cached_db`` cache holds it, or None when it is not there
    or cannot be read here (then Django's own read decides)."""
    readable = _readable()
    if readable is None or not _KEY.fullmatch(session_key):
        return None
    cache = readable[0]
    key = cache.make_and_validate_key(cached_db.SessionStore.cache_key_prefix + session_key)
    try:
        raw = (await _pipelined().execute(("GET", key)))[0]
    except Exception:  # Redis failing: the database thread's read falls back as Django's does
        logger.warning("reading a session from the cache failed", exc_info=True)
        return None
    if raw is None:
        return None
    try:
        data = _serializer.loads(raw)
    except Exception:
        logger.warning("a cached session could not be decoded", exc_info=True)
        return None
    return data if isinstance(data, dict) else None
