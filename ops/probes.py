"""Readiness probes: can this process reach what it needs to serve?"""

import asyncio

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

PROBE_TIMEOUT = 3.0


def _database_query() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def database_error() -> str | None:
    """None when the database answers a query, else what went wrong."""
    try:
        await asyncio.wait_for(sync_to_async(_database_query)(), PROBE_TIMEOUT)
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:300]
    return None


async def channel_layer_error() -> str | None:
    """None when the channel layer takes a send, else what went wrong.

    A send to a group with no members is a real round trip to Redis (channels_redis reads the
    group) and disturbs no reader.
    """
    try:
        layer = get_channel_layer()
        await asyncio.wait_for(layer.group_send("ops.readyz", {"type": "ops.probe"}), PROBE_TIMEOUT)
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:300]
    return None
