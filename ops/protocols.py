"""uvicorn's HTTP protocol, freed by reference counting once it hands a connection to a WebSocket.

uvicorn's ``HttpToolsProtocol`` and its httptools parser refer to each other (the parser calls
back into the protocol's bound methods). uvicorn breaks that cycle in ``connection_lost``
(uvicorn#1604), but a connection upgraded to a WebSocket never calls it on the HTTP protocol:
``handle_websocket_upgrade`` passes the transport to the WebSocket protocol, and the HTTP
protocol, its parser, flow control, event and bound methods (about 25 objects) are left to the
cycle collector. Under churn that garbage was what set off young collections, 12-50 ms each
with the event loop held (``gc.DEBUG_SAVEALL`` in the P1 server, docs/performance.md). After
the upgrade the parser has no more work, so dropping it frees all of them at once.

And a WebSocket's handshake, once answered, is let go (``websocket_handshake_released``), and
its answer leaves in one write with the frames sent right after it (``websocket_accept_held``).
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


def _websocket_method(name: str, flag: str) -> tuple[Any, Any] | None:
    """``(uvicorn's WebSocket protocol on websockets, its method name)`` to patch, or None: not
    under uvicorn (Daphne under runserver, the tests' communicators), no websockets (wsproto has
    a protocol of its own), or patched already (the method carries ``flag``)."""
    if "uvicorn" not in sys.modules:
        return None
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:  # websockets not installed: uvicorn serves WebSockets with wsproto
        return None
    method = getattr(WebSocketsSansIOProtocol, name)
    return None if getattr(method, flag, False) else (WebSocketsSansIOProtocol, method)


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
    found = _websocket_method("handle_connect", "released")
    if found is None:
        return
    from websockets.datastructures import Headers

    WebSocketsSansIOProtocol, connect = found
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


class _Held:
    """A WebSocket's transport while its 101 response waits for what the application sends
    with it in the same turn of the event loop (``websocket_accept_held``)."""

    __slots__ = ("data", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def flush(self) -> None:
        """Write what is held, in one write."""
        if self.data:
            data, self.data = b"".join(self.data), []
            if not self.transport.is_closing():
                self.transport.write(data)

    def release(self, protocol: Any) -> None:
        """Give the protocol its transport back and write what is held (end of the turn)."""
        if protocol.transport is self:
            protocol.transport = self.transport
        self.flush()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, pause_reading, resume_reading
        return getattr(self.transport, name)


def websocket_accept_held() -> None:
    """Write a WebSocket's 101 response together with the frames sent right after it.

    uvicorn writes the response the moment the application accepts, and each frame in a write
    of its own: a syscall each, and a wake-up of the client each. The consumers here accept
    with their first frame (``realtime.consumers.HubConsumer.accept``), so the response is held
    until the end of the event loop's turn, and what the socket sends in that turn goes out
    in the same write (bench S5, docs/performance.md).
    """
    found = _websocket_method("send", "held")
    if found is None:
        return
    WebSocketsSansIOProtocol, send = found

    @functools.wraps(send)
    def held_send(self: WebSocketsSansIOProtocol, message: Any) -> Any:
        # A plain function returning uvicorn's own coroutine: every frame of a fan-out comes
        # this way, and a coroutine of its own around each would cost them all.
        if (
            message["type"] == "websocket.accept"
            and not self.handshake_complete
            and type(self.transport) is not _Held
        ):
            held = _Held(self.transport)
            self.transport = held
            self.loop.call_soon(held.release, self)
        return send(self, message)

    held_send.held = True  # type: ignore[attr-defined]
    WebSocketsSansIOProtocol.send = held_send
