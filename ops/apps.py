from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations: health probes and deployment checks"

    def ready(self) -> None:
        from . import checks

        checks.register_all()
