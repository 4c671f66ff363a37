"""The WebSocket Origin check: the same rule as Django's CSRF check of an unsafe request.

A page of any site can open a socket to us and the browser sends the user's cookies with it,
so the handshake's ``Origin`` must be one we serve. Channels' ``AllowedHostsOriginValidator``
only compares the host name: ``http://127.0.0.1:9999`` and ``https://127.0.0.1`` passed for a
server on ``http://127.0.0.1:8000``. Here the origin must equal the socket's own scheme, host
and port (the request's ``Host`` checked against ``ALLOWED_HOSTS``; the scheme as
``request.is_secure()`` sees it, so ``SECURE_PROXY_SSL_HEADER`` behind a TLS proxy counts) or
be one of ``CSRF_TRUSTED_ORIGINS`` (wildcards included), exactly as ``CsrfViewMiddleware``
decides for a form post.
"""

import functools
import logging
from typing import Any

from asgiref.sync import markcoroutinefunction
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware

logger = logging.getLogger(__name__)


class _HandshakeRequest(HttpRequest):
    """The handshake as an ``HttpRequest``: its headers and the scheme the server saw."""

    def __init__(self, scope: dict[str, Any]) -> None:
        super().__init__()
        self.scope = scope
        for name, value in scope.get("headers", ()):
            key = "HTTP_" + name.decode("latin1").upper().replace("-", "_")
            self.META[key] = value.decode("latin1")
        server = scope.get("server") or ("", "")
        self.META["SERVER_NAME"], self.META["SERVER_PORT"] = server[0] or "", str(server[1] or "")

    def _get_scheme(self) -> str:
        # wss when the server (or a trusted proxy, through uvicorn's --forwarded-allow-ips)
        # says the socket arrived over TLS.
        return "https" if self.scope.get("scheme") in ("wss", "https") else "http"


# The headers the rule reads (Origin, Host, and a proxy's host and port, which Django reads
# with USE_X_FORWARDED_HOST/PORT); the others (cookies, X-Forwarded-For, user agents) vary per
# client and do not change the answer.
_RULE_HEADERS = frozenset((b"origin", b"host", b"x-forwarded-host", b"x-forwarded-port"))


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the handshake's ``Origin`` is one this server serves.

    Decided once per distinct origin, host and scheme (and proxy headers) until the settings
    change: building the request and Django's middleware for every handshake was a tenth of a
    connect's CPU (bench P1, docs/performance.md).
    """
    headers = tuple(
        (name, value)
        for name, value in scope.get("headers", ())
        if name in _RULE_HEADERS or name == _ssl_header()
    )
    return _decided(scope.get("scheme"), tuple(scope.get("server") or ("", "")), headers)


@functools.lru_cache(maxsize=1)
def _ssl_header() -> bytes | None:
    """The header ``SECURE_PROXY_SSL_HEADER`` names, as it arrives in an ASGI scope."""
    setting = settings.SECURE_PROXY_SSL_HEADER
    if not setting:
        return None
    return setting[0].removeprefix("HTTP_").lower().replace("_", "-").encode("latin1")


@functools.lru_cache(maxsize=1024)
def _decided(scheme: str | None, server: tuple[Any, ...], headers: tuple[Any, ...]) -> bool:
    return _origin_verified({"scheme": scheme, "server": server, "headers": headers})


@receiver(setting_changed)
def _settings_changed(**kwargs: Any) -> None:
    _ssl_header.cache_clear()
    _decided.cache_clear()


def _origin_verified(scope: dict[str, Any]) -> bool:
    request = _HandshakeRequest(scope)
    if "HTTP_ORIGIN" not in request.META:
        return False  # every browser sends one; a socket without it is no page of ours
    # Only its origin check is used (no token, no cookie). A new instance per handshake: it
    # caches CSRF_TRUSTED_ORIGINS. Private, but it is the rule itself; tests/test_sockets.py
    # pins what it decides.
    try:
        return CsrfViewMiddleware(lambda request: None)._origin_verified(request)
    except DisallowedHost:
        return False


class OriginValidator:
    """Refuses (HTTP 403) a WebSocket handshake from an origin this server does not serve."""

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # A tail call: the next application's coroutine, so no frame of this one stays for
        # the socket's life (realtime.routers).
        if scope["type"] == "websocket" and not origin_allowed(scope):
            origin = dict(scope.get("headers", ())).get(b"origin", b"").decode("latin1")
            logger.info("socket refused: origin %r is not served here", origin[:200])
            return WebsocketDenier()(scope, receive, send)
        return self.application(scope, receive, send)

    markcoroutinefunction(__call__)
