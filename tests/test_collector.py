"""A process that serves the application (it imports chatproject/asgi.py) hides what start-up
made from the cycle collector and collects young objects less often (ops.collector), and still
collects the cycles it makes afterwards; under uvicorn, a WebSocket's HTTP protocol makes none
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
print(frozen, young, gc.collect())
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
    frozen, young, collected = map(int, _printed(PROBE))
    assert frozen > 50_000  # Django, the apps and their modules
    assert young == YOUNG
    assert collected >= 2


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
