"""Channels' routers, handing each connection on without staying in its call chain.

Channels' ``ProtocolTypeRouter``, ``URLRouter`` and ``as_asgi`` are ``async def`` functions
that ``await`` the next application, so each keeps a suspended coroutine (~240 bytes) for as
long as the socket is open: with the Origin check, four per idle socket beside uvicorn's own
(S3, docs/performance.md). These do the same routing in plain functions that return the next
application's coroutine for the server to await: a tail call, no frame left behind. Routing,
errors and the scope the consumer sees are Channels' own.
"""

from typing import Any

from asgiref.sync import markcoroutinefunction
from channels import routing
from django.urls.exceptions import Resolver404


class ProtocolTypeRouter(routing.ProtocolTypeRouter):
    """``channels.routing.ProtocolTypeRouter`` as a tail call."""

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        application = self.application_mapping.get(scope["type"])
        if application is None:
            raise ValueError(f"No application configured for scope type {scope['type']!r}")
        return application(scope, receive, send)

    # Servers tell an ASGI 3 application by a coroutine function ``__call__``; this one returns
    # the coroutine it would have awaited, which is the same to them.
    markcoroutinefunction(__call__)


class URLRouter(routing.URLRouter):
    """``channels.routing.URLRouter`` as a tail call (the same matching, scope and errors)."""

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        path = scope.get("path_remaining", scope.get("path", None))
        if path is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        if "path_remaining" not in scope:
            root_path = scope.get("root_path", "")
            if root_path and not path.startswith(root_path):
                raise ValueError(f"No route found for path {path!r}.")
            path = path[len(root_path) :]
        path = path.lstrip("/")
        for route in self.routes:
            try:
                match = route.pattern.match(path)
                if not match:
                    continue
                new_path, args, kwargs = match
                kwargs.update(route.default_args)
                outer = scope.get("url_route", {})
                url_route = {
                    "args": outer.get("args", ()) + args,
                    "kwargs": {**outer.get("kwargs", {}), **kwargs},
                }
                inner = dict(scope, path_remaining=new_path, url_route=url_route)
                # A nested router that finds no route raises here, and the next route is
                # tried, as in Channels.
                return route.callback(inner, receive, send)
            except Resolver404:
                continue
        if "path_remaining" in scope:
            raise Resolver404(f"No route found for path {path!r}.")
        raise ValueError(f"No route found for path {path!r}.")

    markcoroutinefunction(__call__)
