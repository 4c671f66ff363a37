"""A chat client as the page's JavaScript is: it reconnects with ?after=<seq> and syncs gaps.

It records every message frame it receives (``raw``), across reconnections, so a test can tell
"exactly once, in order" from "eventually everything".
"""

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import websockets


@dataclass
class ChatClient:
    """One browser tab in one room, talking to ``ws_base`` (e.g. nginx)."""

    name: str
    ws_base: str
    origin: str
    path: str
    cookie: str
    user: str = ""
    reconnect: bool = True
    raw: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    served_by: list[str] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    reconnections: int = 0
    socket: Any = None
    _task: asyncio.Task | None = None
    _stopping: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _synced: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last_seq(self) -> int:
        """The highest seq up to which this client has every message."""
        seq = 0
        while seq + 1 in self.messages:
            seq += 1
        return seq

    @property
    def pid(self) -> int:
        """The worker process serving the current connection."""
        return int(self.served_by[-1].rsplit(":", 1)[1])

    async def _open(self, after: int | None) -> None:
        query = "" if after is None else f"?after={after}"
        self.socket = await websockets.connect(
            f"{self.ws_base}/ws{self.path}{query}",
            additional_headers={"Cookie": self.cookie},
            origin=self.origin,
            open_timeout=20,
            max_queue=None,
        )
        self.served_by.append(self.socket.response.headers.get("X-Served-By", "?:0"))

    async def start(self, after: int = 0) -> None:
        """Connect and keep reading in the background; returns once the catch-up is done.

        Like the page (which passes the last seq it rendered), it always connects with
        ``?after``: the server then joins the room before reading the history, so no message
        falls between the two.
        """
        await self._open(after)
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._synced.wait(), 20)

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async for text in self.socket:
                    attempt = 0
                    await self._receive(json.loads(text))
            except websockets.ConnectionClosed:
                pass
            if self._stopping or not self.reconnect:
                return
            # As the page does: back off with jitter, then catch up from the last seq seen.
            while True:
                attempt += 1
                if attempt > 40:
                    raise RuntimeError(f"{self.name} could not reconnect")
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0) * (0.5 + random.random()))
                try:
                    self.reconnections += 1
                    await self._open(self.last_seq)
                    break
                except (OSError, websockets.InvalidStatus, websockets.InvalidHandshake):
                    continue
                except TimeoutError:
                    continue

    async def _receive(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "synced":
            self._synced.set()
        if frame.get("type") == "notification":
            self.notifications.append(frame)
            self._changed.set()
        if frame.get("type") != "message":
            return
        self.raw.append(frame)
        before = self.last_seq
        self.messages.setdefault(frame["seq"], frame)
        if frame["seq"] > before + 1 and (before + 1) not in self.messages:
            # A gap: ask for what is missing, as the page does.
            try:
                await self.socket.send(json.dumps({"type": "sync", "after": before}))
            except websockets.ConnectionClosed:
                pass
        self._changed.set()

    async def send(self, body: str, client_id: str | None = None) -> None:
        """Send a chat message over the current connection (with the page's idempotency key,
        ``client_id``, if given)."""
        frame = {"type": "message", "body": body}
        if client_id is not None:
            frame["client_id"] = client_id
        await self.socket.send(json.dumps(frame))

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until this client has every message up to ``seq``."""
        return await self.wait_until(lambda client: client.last_seq >= seq, timeout)

    async def wait_until(self, condition, timeout: float) -> bool:
        """Wait until ``condition(self)`` holds."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return condition(self)
        return True

    async def close(self) -> None:
        self._stopping = True
        if self.socket is not None:
            await self.socket.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10)
            except (TimeoutError, websockets.ConnectionClosed):
                self._task.cancel()


async def history(ws_base: str, origin: str, path: str, cookie: str) -> list[dict[str, Any]]:
    """Every stored message of a room (up to one sync page), read over a fresh socket."""
    async with websockets.connect(
        f"{ws_base}/ws{path}?after=0",
        additional_headers={"Cookie": cookie},
        origin=origin,
        open_timeout=20,
    ) as socket:
        frames = []
        while True:
            frame = json.loads(await asyncio.wait_for(socket.recv(), 20))
            if frame["type"] == "synced":
                assert not frame["more"], "more history than one sync page"
                return frames
            if frame["type"] == "message":
                frames.append(frame)


class RecordedSocket:
    """One real WebSocket; a reader task records every frame in arrival order, the close code
    and when the server closed it."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        # Which worker served it (the server's X-Served-By: host:pid, when switched on).
        self.pid = int(ws.response.headers.get("X-Served-By", "?:0").rsplit(":", 1)[1])
        self.frames: list[dict[str, Any]] = []
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, origin: str, cookie: str) -> "RecordedSocket":
        ws = await websockets.connect(
            url,
            additional_headers={"Cookie": cookie},
            origin=origin,
            open_timeout=20,
            max_queue=None,
        )
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                self.frames.append(frame)
                self.queue.put_nowait(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_at = time.monotonic()
            self.close_code = self.ws.close_code
            self.queue.put_nowait(None)

    async def next(self, kinds: Collection[str], timeout: float = 10.0) -> dict:
        """The next frame of one of ``kinds`` (others are skipped; all stay in ``frames``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                frame = await asyncio.wait_for(self.queue.get(), max(remaining, 0.001))
            except TimeoutError:
                raise AssertionError(f"no {sorted(kinds)} frame within {timeout}s") from None
            if frame is None:
                self.queue.put_nowait(None)
                raise AssertionError(f"socket closed ({self.close_code}) awaiting {sorted(kinds)}")
            if frame["type"] in kinds:
                return frame

    def bodies(self) -> list[str]:
        return [f["body"] for f in self.frames if f["type"] == "message"]

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Whether ``condition`` came true within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def ended(self, timeout: float) -> bool:
        """Whether the server closed the socket within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.reader, 10)


CHANGE_ANSWERS = {"message", "message.edited", "message.deleted", "reactions", "error"}


def changes_send(ws_base: str, origin: str, path: str, cookie: str, *frames: dict) -> list[dict]:
    """Send change frames over one real room socket, each after the previous one's answer;
    returns the answers (the broadcast frame, or an error frame for a refused change)."""
    from websockets.sync.client import connect

    answers = []
    with connect(
        f"{ws_base}/ws{path}", additional_headers={"Cookie": cookie}, origin=origin
    ) as socket:
        for frame in frames:
            socket.send(json.dumps(frame))
            while (answer := json.loads(socket.recv(timeout=20)))["type"] not in CHANGE_ANSWERS:
                pass
            answers.append(answer)
    return answers
