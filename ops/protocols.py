"""uvicorn's HTTP protocol, freed by reference counting once it hands a connection to a WebSocket.

uvicorn's ``HttpToolsProtocol`` and its httptools parser refer to each other (the parser calls
back into the protocol's bound methods). uvicorn breaks that cycle in ``connection_lost``
(uvicorn#1604), but a connection upgraded to a WebSocket never calls it on the HTTP protocol:
``handle_websocket_upgrade`` passes the transport to the WebSocket protocol, and the HTTP
protocol, its parser, flow control, event and bound methods (about 25 objects) are left to the
cycle collector. Under churn that garbage was what set off young collections, 12-50 ms each
with the event loop held (``gc.DEBUG_SAVEALL`` in the P1 server, docs/performance.md). After
the upgrade the parser has no more work, so dropping it frees all of them at once.
"""

import functools
import sys


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
