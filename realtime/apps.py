from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Real-time delivery"

    def ready(self) -> None:
        from . import checks
        from .sessions import signals_connect

        signals_connect()
        checks.register_all()
