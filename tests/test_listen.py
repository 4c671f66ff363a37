"""A node started with several workers queues the connects that arrive while its workers still
import the application, instead of refusing them (``ops.listen``): uvicorn's supervisor binds
the port without listening, and a worker listens only once the application is loaded, so
every browser reconnecting to a restarting node was refused and backed off once more."""

import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ops.listen import listen_early

from .support.server import free_port, manage
from .support.services import Node, node_env, redis_server


def _first_connect(port: int, process: subprocess.Popen, timeout: float = 60) -> socket.socket:
    """The first TCP connection the port accepts, tried every 2 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the node exited"
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            time.sleep(0.002)
    raise TimeoutError(f"port {port} accepted nothing within {timeout}s")


def test_a_starting_node_queues_connects_while_its_workers_load_the_application():
    with redis_server() as redis, tempfile.TemporaryDirectory(prefix="chat-listen-") as tmp:
        env = node_env(redis_url=redis.url, SQLITE_PATH=str(Path(tmp) / "db.sqlite3"))
        manage(env, "migrate", "--noinput")
        node = Node(free_port(), env, Path(tmp) / "node.log", workers=2)
        node.launch()  # Node.start would wait for the port, taking its first connect
        try:
            with _first_connect(node.port, node.process) as conn:
                # uvicorn logs this line once a worker has loaded the application: none had.
                assert "Started server process" not in node.log()
                conn.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                # ... and the connection made before is answered once one has.
                assert conn.recv(64).startswith(b"HTTP/1.1 200 ")
            assert "Started server process" in node.log()
        finally:
            node.stop()


def test_outside_uvicorns_supervisor_no_socket_is_touched():
    # A process of its own (a server on one worker, a test, a management command) listens on
    # nothing it did not ask to: a bound socket stays as it is.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        assert listen_early() == 0
        assert bound.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
