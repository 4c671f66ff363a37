"""Channel layers: a leaner in-memory one here, channels_redis' core layer with a pool that
waits in ``realtime.redis_layer`` (loaded on first use of its names here: a restart's new
process serves sooner without channels_redis and redis-py's asyncio client, ~35 ms, bench S5).
"""

import asyncio
import logging
import time
from typing import Any

import channels.exceptions
import channels.layers

logger = logging.getLogger(__name__)

_REDIS_NAMES = {"RedisChannelLayer", "pool_create"}


def __getattr__(name: str) -> Any:
    """``RedisChannelLayer`` and ``pool_create`` from ``realtime.redis_layer``, on first use."""
    if name in _REDIS_NAMES:
        from . import redis_layer

        return getattr(redis_layer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        await self._group_send(group, message, None)

    async def group_send_many(
        self, events: list[tuple[str, dict[str, Any]]], skip: str | None = None
    ) -> None:
        """``group_send`` each ``(group, message)`` in order, to every member but ``skip`` (the
        sending process's hub, which had them already: realtime.events)."""
        for group, message in events:
            await self._group_send(group, message, skip)

    async def _group_send(self, group: str, message: dict[str, Any], skip: str | None) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in tuple(self.groups.get(group, ())):
            if channel == skip:
                continue
            try:
                await self.send(channel, message)
            except channels.exceptions.ChannelFull:
                logger.warning("channel %s is full: it misses a message of %s", channel, group)
