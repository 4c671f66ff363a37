"""System checks for deployment mistakes a user can make."""

from typing import Any

from channels.layers import InMemoryChannelLayer
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string


def in_memory_layer_used() -> bool:
    """Whether the default channel layer is Channels' in-memory layer (or a subclass of it)."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND")
    try:
        return issubclass(import_string(backend), InMemoryChannelLayer)
    except (ImportError, TypeError):
        return False


def in_memory_layer_in_production(**kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when production settings (DEBUG off) use the in-memory channel layer."""
    if settings.DEBUG or not in_memory_layer_used():
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
