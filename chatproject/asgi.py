"""ASGI entry point: HTTP through Django, WebSockets through each app's routing."""

import os

import ops.listen

ops.listen.listen_early()

import ops.collector  # noqa: E402

# Start-up makes only what lives as long as the process: no collections until it is done.
ops.collector.collector_pause()

from django.core.asgi import get_asgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
# Initialise Django (app registry, settings) before importing anything that imports models:
# the consumers imported by the routing modules below touch the ORM at import time.
django_asgi_app = get_asgi_application()

import notifications.routing  # noqa: E402
import ops.asgi  # noqa: E402
import ops.protocols  # noqa: E402
import rooms.routing  # noqa: E402
from realtime.auth import SessionAuthMiddleware  # noqa: E402
from realtime.origin import OriginValidator  # noqa: E402

# Channels' routers, as tail calls: no coroutine of theirs stays per open socket (S3).
from realtime.routers import ProtocolTypeRouter, URLRouter  # noqa: E402

websocket_urlpatterns = [
    *rooms.routing.websocket_urlpatterns,
    *notifications.routing.websocket_urlpatterns,
]

application = ops.asgi.served_by(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # The Origin must be this server's scheme, host and port, as for a form post.
            "websocket": OriginValidator(SessionAuthMiddleware(URLRouter(websocket_urlpatterns))),
            # Refuses to start several workers on the in-memory layer (see ops.guard).
            "lifespan": ops.asgi.lifespan,
        }
    )
)

# Under uvicorn, an upgraded connection's HTTP protocol is freed at once (ops.protocols).
ops.protocols.http_protocol_uncycled()
# ... and a WebSocket's handshake is let go once answered (ops.protocols).
ops.protocols.websocket_handshake_released()
# ... and its 101 response goes out in one write with the frames sent right after it.
ops.protocols.websocket_accept_held()
# Everything is loaded: what start-up made leaves the cycle collector's view (ops.collector).
ops.collector.collector_tune()
