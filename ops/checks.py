"""System checks for deployment mistakes a user can make."""

from typing import Any

from django.conf import settings
from django.core import checks

IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


def in_memory_layer_in_production(**kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when production settings (DEBUG off) use the in-memory channel layer."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND")
    if settings.DEBUG or backend != IN_MEMORY_LAYER:
        return []
    return [
        checks.Warning(
            "The in-memory channel layer is in use with DEBUG off: it cannot cross processes, "
            "so users served by different worker processes or machines would not see each "
            "other's messages.",
            hint="Set REDIS_URL (e.g. redis://127.0.0.1:6379/0) before running more than one "
            "worker; a single process (uvicorn --workers 1) is fine without it.",
            id="ops.W001",
        )
    ]


def register_all() -> None:
    """Register this app's checks (called from ``OpsConfig.ready``)."""
    checks.register(in_memory_layer_in_production, checks.Tags.compatibility)
