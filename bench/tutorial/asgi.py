"""ASGI entry point of the tutorial-style peer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.tutorial.settings")
# Initialise Django before importing the consumers, as the tutorial's asgi.py does.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import ChatConsumer  # noqa: E402

# The tutorial also wraps the router in AuthMiddlewareStack; the peer has no users, so its
# session and user lookups would only add a database this peer does not have.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            URLRouter([path("ws/rooms/<str:room_name>/", ChatConsumer.as_asgi())])
        ),
    }
)
