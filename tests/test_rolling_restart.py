"""A new release without a dead window: deploy/chat.service run as systemd runs it, and
reloaded as its ``ExecReload`` does (SIGHUP to uvicorn's supervisor), while people chat.

Every worker is replaced by one running the code on disk; the port never stops listening, so
no connect is refused; every socket of an old worker is closed under it and comes back on a
new one with ``?after=``; every message sent meanwhile is stored once and reaches every client
once, in seq order (docs/scaling.md, "A new release without a dead window")."""

import asyncio
import configparser
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import websockets

from .support.clients import ChatClient, history
from .support.server import ROOT, cookie_header, free_port, manage, room_create, signup
from .support.services import node_env, process_tree, redis_server

pytestmark = pytest.mark.server

UNIT = ROOT / "deploy" / "chat.service"
WORKERS = 2
TOTAL = 40  # messages, sent while the workers are replaced


def unit_service() -> configparser.SectionProxy:
    """The ``[Service]`` section of deploy/chat.service (systemd's syntax is INI's)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    assert parser.read(UNIT)
    return parser["Service"]


def exec_start(port: int) -> list[str]:
    """The unit's ExecStart on 127.0.0.1:``port`` with ``WORKERS`` workers, run by this
    virtualenv's Python instead of /srv/chat/.venv/bin/uvicorn."""
    argv = shlex.split(unit_service()["ExecStart"])
    assert argv[0].endswith("/.venv/bin/uvicorn") and argv[1] == "chatproject.asgi:application"
    for option, value in (("--host", "127.0.0.1"), ("--port", str(port)), ("--workers", "2")):
        argv[argv.index(option) + 1] = value
    return [sys.executable, "-m", "uvicorn", *argv[1:]]


def reload_signal() -> signal.Signals:
    """The signal of the unit's ``ExecReload=/bin/kill -HUP $MAINPID``."""
    command = shlex.split(unit_service()["ExecReload"])
    assert command[0] == "/bin/kill" and command[-1] == "$MAINPID", command
    return signal.Signals["SIG" + command[1].lstrip("-")]


def workers(supervisor: int) -> set[int]:
    """The worker processes of uvicorn's supervisor (not multiprocessing's resource tracker)."""
    found = set()
    for pid in process_tree(supervisor):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command and b"resource_tracker" not in command:
            found.add(pid)
    return found


async def refused_while(port: int, done: asyncio.Event) -> tuple[int, int]:
    """Connect to ``port`` every 20 ms until ``done``: ``(attempts, refused)``."""
    attempts = refused = 0
    while not done.is_set():
        attempts += 1
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
        except ConnectionRefusedError:
            refused += 1
        await asyncio.sleep(0.02)
    return attempts, refused


async def send_stored_once(sender: ChatClient, i: int) -> None:
    """Send message ``i`` with a ``client_id``, again on the next socket until the sender has
    it back: as the page does when its socket fails under a send (stored once either way)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await sender.send(f"flow {i}", client_id=f"flow-{i}")
        except websockets.ConnectionClosed:
            pass
        back = await sender.wait_until(
            lambda c: any(m.get("client_id") == f"flow-{i}" for m in c.messages.values()), 2
        )
        if back:
            return
        assert time.monotonic() < deadline, f"flow {i} never came back to its sender"


def test_a_reload_replaces_every_worker_refusing_no_connect_and_losing_no_message():
    with redis_server() as redis, tempfile.TemporaryDirectory(prefix="chat-reload-") as tmp:
        env = node_env(redis_url=redis.url, SQLITE_PATH=str(Path(tmp) / "db.sqlite3"))
        manage(env, "migrate", "--noinput")
        port, log_path = free_port(), Path(tmp) / "service.log"
        with open(log_path, "ab") as log:
            service = subprocess.Popen(
                exec_start(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

        def log_text() -> str:
            return log_path.read_text(errors="replace")

        def wait_started(count: int) -> None:
            deadline = time.monotonic() + 60
            while log_text().count("Application startup complete") < count:
                assert service.poll() is None, log_text()[-3000:]
                assert time.monotonic() < deadline, log_text()[-3000:]
                time.sleep(0.1)

        try:
            wait_started(WORKERS)
            old = workers(service.pid)
            assert len(old) == WORKERS, old
            url = f"http://127.0.0.1:{port}"
            sessions = [signup(url, name) for name in ("ann", "ben", "cy")]
            path = room_create(sessions[0], "Releases")

            def client(i: int) -> ChatClient:
                session = sessions[i % len(sessions)]
                return ChatClient(
                    name=f"tab-{i}",
                    ws_base=f"ws://127.0.0.1:{port}",
                    origin=url,
                    path=path,
                    cookie=cookie_header(session),
                )

            async def scenario():
                clients = [client(i) for i in range(12)]
                await asyncio.gather(*(c.start() for c in clients))
                assert {c.pid for c in clients} <= old
                senders, readers = clients[:2], clients[2:]
                done = asyncio.Event()
                probing = asyncio.create_task(refused_while(port, done))

                async def flow() -> None:
                    for i in range(TOTAL):
                        await send_stored_once(senders[i % 2], i)
                        await asyncio.sleep(0.1)

                flowing = asyncio.create_task(flow())
                await asyncio.sleep(0.5)
                service.send_signal(reload_signal())
                # Each new worker starts and serves before an old one is stopped.
                await asyncio.to_thread(wait_started, 2 * WORKERS)
                deadline = time.monotonic() + 60
                while old & workers(service.pid):
                    assert time.monotonic() < deadline, log_text()[-3000:]
                    await asyncio.sleep(0.1)
                await flowing
                done.set()
                arrived = await asyncio.gather(*(c.wait_for(TOTAL, 30) for c in clients))
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
                return clients, readers, await probing, arrived

            clients, readers, (attempts, refused), arrived = asyncio.run(scenario())
            new = workers(service.pid)
            assert len(new) == WORKERS and not new & old, (old, new)
            assert attempts > 50 and refused == 0, (attempts, refused)
            assert all(arrived), [(c.name, c.last_seq) for c in clients]

            cookie = cookie_header(sessions[0])
            messages = asyncio.run(history(f"ws://127.0.0.1:{port}", url, path, cookie))
            assert [m["seq"] for m in messages] == list(range(1, TOTAL + 1))
            assert sorted(m["body"] for m in messages) == sorted(f"flow {i}" for i in range(TOTAL))
            triples = [(m["seq"], m["id"], m["body"]) for m in messages]
            for tab in clients:
                # Every socket was closed under it by its old worker and came back on a new one.
                assert tab.reconnections >= 1 and tab.pid in new, (tab.name, tab.served_by)
                have = (
                    tab.raw if tab in readers else [tab.messages[s] for s in sorted(tab.messages)]
                )
                # Catch-up with ?after=<seq> plus live frames: none missing, none twice.
                assert [(f["seq"], f["id"], f["body"]) for f in have] == triples, tab.name
            assert "Traceback" not in log_text(), log_text()[-3000:]
        finally:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for pid in process_tree(service.pid):
                    os.kill(pid, signal.SIGKILL)
                service.wait(timeout=10)
