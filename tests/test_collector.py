"""A process that serves the application (it imports chatproject/asgi.py) hides what start-up
made from the cycle collector and collects young objects less often (ops.collector), and still
collects the cycles it makes afterwards (the collector, paused for start-up, runs again); under
uvicorn, a WebSocket's HTTP protocol makes none, and its handshake is let go once answered
(ops.protocols)."""

import subprocess
import sys

from ops.collector import YOUNG

from .support.server import ROOT, server_env

PROBE = """
import gc
import chatproject.asgi
frozen, young = gc.get_freeze_count(), gc.get_threshold()[0]

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made while serving
del a, b
print(frozen, young, gc.collect(), int(gc.isenabled()))
"""


def _printed(script: str) -> list[str]:
    """What ``script`` prints, run in a process of its own with a server's settings."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.split()


def test_a_serving_process_freezes_start_up_and_still_collects_new_cycles():
    frozen, young, collected, enabled = map(int, _printed(PROBE))
    assert frozen > 50_000  # Django, the apps and their modules
    assert young == YOUNG
    assert collected >= 2
    assert enabled  # paused for start-up only (collector_pause)


UPGRADES = """
import asyncio, gc, socket
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # as uvicorn loads it
import chatproject.asgi
import websockets


async def main():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        chatproject.asgi.application, port=port, http="httptools", lifespan="off",
        log_level="warning", ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    gc.collect()
    gc.disable()  # from here only reference counting frees objects
    codes = []
    for _ in range(50):  # anonymous room sockets: accepted, then closed with 4401
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/rooms/lobby/", origin=f"http://127.0.0.1:{port}",
            compression=None,
        ) as ws:
            try:
                await ws.recv()
            except websockets.ConnectionClosed as closed:
                codes.append(closed.rcvd.code)
    await asyncio.sleep(0.5)
    alive = sum(type(o) is HttpToolsProtocol for o in gc.get_objects())
    print(len(codes), ",".join(map(str, sorted(set(codes)))), alive)
    server.should_exit = True
    await serving


asyncio.run(main())
"""


def test_an_upgraded_connections_http_protocol_is_freed_without_the_cycle_collector():
    """uvicorn leaves each WebSocket's HTTP protocol in a reference cycle with its parser
    (ops.protocols): 50 sockets made 50 protocols only the cycle collector could free."""
    closed, codes, alive = _printed(UPGRADES)
    assert (closed, codes) == ("50", "4401")  # each socket served to its end
    assert alive == "0"  # without ops.protocols: "50"


HANDSHAKES = """
import asyncio, gc, socket, tracemalloc
import uvicorn
import websockets
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol as P
from websockets.http11 import Request
import chatproject.asgi  # applies ops.protocols

SOCKETS = 100


async def echo(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        cookie = dict(scope["headers"])[b"cookie"].decode()
        await send({"type": "websocket.send", "text": message["text"] + " " + cookie})


async def sockets_held(port):
    \"\"\"Open SOCKETS sockets, each answering a frame after its handshake; the bytes each one
    holds (server and client side), whether the server still holds a handshake, then close.\"\"\"
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    sockets = []
    for n in range(SOCKETS):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/", compression=None,
            additional_headers={"Cookie": f"sessionid={n:040d}", "X-Padding": "x" * 300},
        )
        await ws.send("ping")
        assert await ws.recv() == f"ping sessionid={n:040d}"  # the scope kept its headers
        sockets.append(ws)
    gc.collect()
    held = (tracemalloc.get_traced_memory()[0] - before) // SOCKETS
    protocols = [o for o in gc.get_objects() if type(o) is P]
    kept = sum(p.request is not None or p.response is not None for p in protocols)
    mine = {id(ws.request) for ws in sockets}  # the client side's own requests
    headers = sum(
        len(o.headers) for o in gc.get_objects() if type(o) is Request and id(o) not in mine
    )
    for ws in sockets:
        await ws.close()
        assert ws.close_code == 1000
    return held, len(protocols), kept, headers


async def main():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        echo, port=port, lifespan="off", log_level="warning", ws_per_message_deflate=False
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    tracemalloc.start()
    await sockets_held(port)  # warm up: what the first sockets of a process make once
    released = await sockets_held(port)
    P.handle_connect = P.handle_connect.__wrapped__  # uvicorn's own, for comparison
    P.start_keepalive = P.start_keepalive.__wrapped__
    kept = await sockets_held(port)
    print(*released, *kept)
    server.should_exit = True
    await serving


asyncio.run(main())
"""


def test_an_answered_websocket_handshake_is_let_go_and_the_socket_still_serves():
    """uvicorn kept each socket's opening request and 101 response for the socket's life (and
    websockets' parser the request): ~4.4 KB of an idle socket's ~24, nothing reading them
    again (S3). Let go, the sockets still answer with their scope's headers and close cleanly."""
    held, protocols, kept, headers, uvicorn_held, _, uvicorn_kept, uvicorn_headers = map(
        int, _printed(HANDSHAKES)
    )
    assert protocols == 100 and kept == 0 and headers == 0
    assert uvicorn_kept == 100 and uvicorn_headers >= 100 * 5  # uvicorn's own keeps them
    assert uvicorn_held - held > 2500, (held, uvicorn_held)  # bytes per socket let go
