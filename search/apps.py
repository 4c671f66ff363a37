from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _index_repair(using: str, **kwargs) -> None:
    from . import schema

    schema.index_repair(connections[using])


class SearchConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "search"

    def ready(self) -> None:
        # After every migrate (of any app): a rebuilt rooms_message table loses its triggers.
        post_migrate.connect(_index_repair, dispatch_uid="search_index_repair")
