"""A socket's 101 response leaves with its first frame, in one write (``ops.protocols``,
``HubConsumer.accept``): a reconnect storm's sockets each cost the server one write and the
client one wake-up less (bench S5, docs/performance.md)."""

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from chatproject.asgi import application
from ops.protocols import websocket_accept_held

from .conftest import session_cookie

UPGRADE = (
    b"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class _Transport:
    """What uvicorn's protocol writes, write by write (the socket's side of a real server)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        names = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}
        return names.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _served(app) -> tuple[WebSocketsSansIOProtocol, _Transport]:
    """Serve one WebSocket handshake with uvicorn's own protocol, as held by this project."""
    websocket_accept_held()
    config = Config(app=app, lifespan="off", log_level="warning")
    config.load()
    protocol = WebSocketsSansIOProtocol(config, ServerState(), {})
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(UPGRADE)
    for _ in range(50):
        await asyncio.sleep(0.001)
    return protocol, transport


async def test_the_accept_and_the_frames_sent_with_it_leave_in_one_write():
    done = asyncio.Event()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": '{"type":"one"}'})
        await send({"type": "websocket.send", "text": '{"type":"two"}'})
        await done.wait()

    protocol, transport = await _served(app)
    [written] = transport.writes
    assert protocol.transport is transport
    assert written.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert written.index(b'{"type":"one"}') < written.index(b'{"type":"two"}')
    done.set()


async def test_a_frame_sent_in_a_later_turn_is_a_write_of_its_own():
    done = asyncio.Event()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0.01)  # the database, say: the response has gone out meanwhile
        await send({"type": "websocket.send", "text": "later"})
        await done.wait()

    _, transport = await _served(app)
    response, frame = transport.writes
    assert response.startswith(b"HTTP/1.1 101 ") and response.endswith(b"\r\n\r\n")
    assert frame.endswith(b"later")
    done.set()


async def test_an_accept_closed_at_once_is_one_write_then_closed_in_order():
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4401})

    protocol, transport = await _served(app)
    [written] = transport.writes
    assert written.startswith(b"HTTP/1.1 101 ")
    assert written.endswith((4401).to_bytes(2, "big"))  # the close frame, behind the response
    assert not transport.closed  # uvicorn waits for the client's close frame, as before
    assert protocol.transport is transport  # handed back once written


def _communicator(path: str, cookie: str | None) -> WebsocketCommunicator:
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
    if cookie is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


@pytest.mark.django_db(transaction=True)
async def test_a_reconnect_is_accepted_together_with_its_catch_up(alice, room):
    from channels.db import database_sync_to_async

    cookie = await database_sync_to_async(session_cookie)(alice)
    socket = _communicator(f"/ws/rooms/{room.slug}/?after=0", cookie)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    # The accept was held until the catch-up was read and sent right behind it: the
    # ``synced`` frame was already waiting when the handshake's answer arrived.
    assert socket.output_queue.qsize() >= 1
    frame = json.loads((await socket.receive_output(timeout=1))["text"])
    assert frame == {"type": "synced", "last_seq": 0, "more": False}
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_anonymous_socket_is_still_accepted_then_closed_with_4401(room):
    socket = _communicator(f"/ws/rooms/{room.slug}/?after=0", None)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    assert (await socket.receive_output(timeout=1)) == {"type": "websocket.close", "code": 4401}
