from django.apps import AppConfig


class ChatappConfig(AppConfig):
    name = "chatapp"
    verbose_name = "Chat front page and accounts"

    def ready(self) -> None:
        from . import security  # noqa: F401  (connects the failed-login log)
