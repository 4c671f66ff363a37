from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete


class RoomsConfig(AppConfig):
    name = "rooms"
    verbose_name = "Rooms"

    def ready(self) -> None:
        from .models import Room

        post_delete.connect(_room_deleted, sender=Room, dispatch_uid="rooms.room_deleted")


def _room_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """This worker forgets a deleted room at once (the others when a connect finds it gone)."""
    from .selectors import rooms_forget

    rooms_forget(slug=instance.slug)
