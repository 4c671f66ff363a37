"""Probes for load balancers: /healthz (the process answers), /readyz (it can serve)."""

import asyncio

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from . import probes


@never_cache
async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and its event loop answers."""
    return JsonResponse({"status": "ok"})


@never_cache
async def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the channel layer are reachable (503 naming what is not)."""
    database, layer = await asyncio.gather(probes.database_error(), probes.channel_layer_error())
    checks = {"database": database or "ok", "channel_layer": layer or "ok"}
    ready = database is None and layer is None
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
