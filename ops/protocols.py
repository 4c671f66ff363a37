"""uvicorn's HTTP protocol, freed by reference counting once it hands a connection to a WebSocket.

uvicorn's ``HttpToolsProtocol`` and its httptools parser refer to each other (the parser calls
back into the protocol's bound methods). uvicorn breaks that cycle in ``connection_lost``
(uvicorn#1604), but a connection upgraded to a WebSocket never calls it on the HTTP protocol:
``handle_websocket_upgrade`` passes the transport to the WebSocket protocol, and the HTTP
protocol, its parser, flow control, event and bound methods (about 25 objects) are left to the
cycle collector. Under churn that garbage was what set off young collections, 12-50 ms each
with the event loop held (``gc.DEBUG_SAVEALL`` in the P1 server, docs/performance.md). After
the upgrade the parser has no more work, so dropping it frees all of them at once.

And a WebSocket's handshake, once answered, is let go (``websocket_handshake_released``).
"""

import functools
import sys
from typing import Any


def http_protocol_uncycled() -> None:
    """Drop the parser of an HTTP connection that uvicorn upgraded (once per process)."""
    if "uvicorn" not in sys.modules:
        return  # another server (Daphne under runserver, the tests' communicators)
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed: uvicorn serves HTTP with h11, no cycle
        return
    upgrade = HttpToolsProtocol.handle_websocket_upgrade
    if getattr(upgrade, "uncycled", False):
        return

    @functools.wraps(upgrade)
    def handle_websocket_upgrade(self: HttpToolsProtocol) -> None:
        upgrade(self)
        self.parser = None  # as connection_lost does; the WebSocket protocol has the transport

    handle_websocket_upgrade.uncycled = True  # type: ignore[attr-defined]
    HttpToolsProtocol.handle_websocket_upgrade = handle_websocket_upgrade


def websocket_handshake_released() -> None:
    """Let go of a WebSocket's handshake once it is answered (once per process).

    uvicorn's ``WebSocketsSansIOProtocol`` keeps the opening request (``self.request``) and the
    101 response (``self.response``) for the socket's whole life, and websockets' parser keeps
    the request too (a local of its generator): their header objects were ~4.4 KB of every idle
    socket, a fifth of its memory (tracemalloc over 1,500 sockets, S3 in docs/performance.md).
    Neither is read again: the scope holds its own copy of the headers, made from the request
    before the application starts, and the response is only read to answer ``websocket.accept``,
    after which uvicorn starts the socket's keepalive. So the request's headers are emptied once
    uvicorn has made the scope, and the response is dropped when the keepalive starts.
    """
    if "uvicorn" not in sys.modules:
        return
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
        from websockets.datastructures import Headers
    except ImportError:  # websockets not installed: uvicorn serves WebSockets with wsproto
        return
    connect = WebSocketsSansIOProtocol.handle_connect
    if getattr(connect, "released", False):
        return
    keepalive = WebSocketsSansIOProtocol.start_keepalive
    no_headers = Headers()

    @functools.wraps(connect)
    def handle_connect(self: WebSocketsSansIOProtocol, event: Any) -> None:
        connect(self, event)  # the scope (with its headers) and the response are made
        self.request = None
        event.headers = no_headers  # the parser's reference to the request stays

    @functools.wraps(keepalive)
    def start_keepalive(self: WebSocketsSansIOProtocol) -> None:
        self.response = None  # the 101 response is written: the handshake is done
        keepalive(self)

    handle_connect.released = True  # type: ignore[attr-defined]
    WebSocketsSansIOProtocol.handle_connect = handle_connect
    WebSocketsSansIOProtocol.start_keepalive = start_keepalive
