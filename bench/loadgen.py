"""An asyncio WebSocket load generator that runs in several processes and merges their numbers.

Every client opens one socket into a room; senders send ``{"type": "message", "body": ...}``
frames at a fixed rate, each body carrying a phase tag, a unique message id and the send time
(``time.monotonic_ns``, one clock for every process on the machine). Every socket counts the
deliveries it hears, so loss and end-to-end latency come out per message.
"""

import argparse
import asyncio
import gc
import json
import multiprocessing
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from .stats import PhaseStats, merge, summarise
from .system import own_cpu_seconds, raise_nofile


@dataclass(frozen=True)
class Client:
    """One socket: where it connects, its room, whether it sends, and extra headers (cookies)."""

    url: str
    room: str
    sender: bool = False
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Phase:
    """A stretch of sending at ``rate`` messages/s per sender; the warm-up is not measured."""

    rate: float
    duration: float = 6.0
    warmup: float = 1.0
    drain: float = 2.0
    body_size: int = 0


@dataclass(frozen=True)
class Config:
    """How the load generator connects and how many processes it uses."""

    procs: int = 2
    origin: str | None = None
    connect_timeout: float = 15.0
    connect_concurrency: int = 64
    connect_deadline: float = 180.0


@dataclass
class _Worker:
    """State of one load-generator process."""

    items: list[tuple[int, Client]]
    config: Config
    sockets: list[tuple[int, Client, ClientConnection]] = field(default_factory=list)
    stats: PhaseStats = field(default_factory=PhaseStats)
    tag: str | None = None
    dropped: int = 0
    closing: bool = False

    def on_frame(self, raw: str | bytes, now_ns: int) -> None:
        """Count one frame a socket heard."""
        frame = orjson.loads(raw)
        kind = frame.get("type")
        if kind == "message":
            body = frame.get("body")
            if self.tag is None or not isinstance(body, str):
                return
            parts = body.split(" ", 3)
            if len(parts) < 3 or parts[0] != self.tag:
                return
            self.stats.received[parts[1]] += 1
            self.stats.latencies_ms.append((now_ns - int(parts[2])) / 1e6)
        elif kind == "error" and self.tag is not None:
            self.stats.errors[str(frame.get("code"))] += 1

    async def receive(self, ws: ClientConnection) -> None:
        """Read a socket until it closes."""
        try:
            async for raw in ws:
                self.on_frame(raw, time.monotonic_ns())
        except ConnectionClosed:
            pass
        except Exception:
            # A frame we cannot parse is not the server's loss to count; note it and go on.
            self.stats.errors["unparsable"] += 1
        if not self.closing:
            self.dropped += 1

    async def open_one(self, index: int, client: Client, gate: asyncio.Semaphore) -> str | None:
        """Open one socket; returns the reason it failed, or None."""
        async with gate:
            try:
                ws = await connect(
                    client.url,
                    additional_headers=list(client.headers),
                    origin=self.config.origin,  # type: ignore[arg-type]
                    compression=None,
                    open_timeout=self.config.connect_timeout,
                    ping_interval=None,
                    close_timeout=1,
                    user_agent_header=None,
                    proxy=None,  # loopback only: not the environment's proxies per connect
                )
            except InvalidStatus as exc:
                return f"http {exc.response.status_code}"
            except Exception as exc:
                return type(exc).__name__
        self.sockets.append((index, client, ws))
        asyncio.get_running_loop().create_task(self.receive(ws))
        return None

    async def open_all(self) -> dict[str, Any]:
        """Open every socket, then drop those the server closed right after accepting."""
        gate = asyncio.Semaphore(self.config.connect_concurrency)
        started = time.monotonic()
        tasks = [self.open_one(index, client, gate) for index, client in self.items]
        try:
            results = await asyncio.wait_for(asyncio.gather(*tasks), self.config.connect_deadline)
        except TimeoutError:
            results = ["connect deadline"] * (len(self.items) - len(self.sockets))
        elapsed = time.monotonic() - started
        # A server may accept and then close at once (e.g. 4401 for a missing session).
        await asyncio.sleep(0.3)
        reasons = Counter(reason for reason in results if reason)
        alive = []
        for index, client, ws in self.sockets:
            if ws.state is State.OPEN:
                alive.append((index, client, ws))
            else:
                reasons[f"closed {ws.close_code}"] += 1
        self.sockets = alive
        self.dropped = 0
        return {
            "attempted": len(self.items),
            "opened": len(alive),
            "failed": len(self.items) - len(alive),
            "fail_reasons": dict(reasons),
            "connect_s": elapsed,
        }

    async def reopen(self) -> int:
        """Reconnect the sockets the server has closed since; returns how many came back."""
        gate = asyncio.Semaphore(self.config.connect_concurrency)
        closed = [(i, c) for i, c, ws in self.sockets if ws.state is not State.OPEN]
        if not closed:
            return 0
        self.sockets = [s for s in self.sockets if s[2].state is State.OPEN]
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(self.open_one(i, c, gate) for i, c in closed)),
                self.config.connect_deadline,
            )
        except TimeoutError:
            return 0
        return sum(1 for reason in results if reason is None)

    async def send_loop(
        self, index: int, client: Client, ws: ClientConnection, phase: Phase, start: float, n: int
    ) -> None:
        """Send at the phase's rate on an absolute schedule, so a late loop does not lower it."""
        interval = 1.0 / phase.rate
        warm_end = start + phase.warmup
        end = start + phase.duration
        due = start + random.uniform(0, interval)
        pad = " " + "x" * phase.body_size if phase.body_size else ""
        count = 0
        while due < end:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            measured = due >= warm_end
            message_id = f"{n}.{index}.{count}"
            tag = f"P{n}" if measured else f"W{n}"
            body = f"{tag} {message_id} {time.monotonic_ns()}{pad}"
            try:
                await ws.send(orjson.dumps({"type": "message", "body": body}).decode())
            except ConnectionClosed:
                return
            if measured:
                self.stats.sent_room[message_id] = client.room
            count += 1
            due += interval

    async def run_phase(self, phase: Phase, start: float, n: int) -> dict[str, Any]:
        """Run one phase from the shared start time and return this process's statistics."""
        # Sockets the server closed in an earlier phase are not expected to hear this one.
        live = [(i, c, ws) for i, c, ws in self.sockets if ws.state is State.OPEN]
        self.stats = PhaseStats(opened_by_room=Counter(c.room for _, c, _ in live))
        dropped_before = self.dropped
        self.tag = f"P{n}"
        senders = [
            self.send_loop(index, client, ws, phase, start, n)
            for index, client, ws in live
            if client.sender and phase.rate > 0
        ]
        window = asyncio.ensure_future(
            self.cpu_window(start + phase.warmup, start + phase.duration)
        )
        await asyncio.gather(*senders)
        await asyncio.sleep(max(0.0, start + phase.duration + phase.drain - time.monotonic()))
        self.tag = None
        self.stats.dropped = self.dropped - dropped_before
        self.stats.cpu_s = await window
        return self.stats.to_dict()

    @staticmethod
    async def cpu_window(begin: float, end: float) -> float:
        """CPU seconds this process spends between two moments (the measured window)."""
        await asyncio.sleep(max(0.0, begin - time.monotonic()))
        before = own_cpu_seconds()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        return own_cpu_seconds() - before

    async def close_all(self) -> None:
        """Close every socket, abandoning the handshakes that take too long."""
        self.closing = True
        closes = [ws.close() for _, _, ws in self.sockets]
        try:
            await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), 5)
        except TimeoutError:
            for _, _, ws in self.sockets:
                ws.transport.abort()


async def _worker_main(pipe: Any, worker: _Worker) -> None:
    loop = asyncio.get_running_loop()
    ready = await worker.open_all()
    # Thousands of connection objects make each full collection slow enough to show up as
    # latency; they live until the end, so move them out of the collector's sight.
    gc.collect()
    gc.freeze()
    pipe.send(("ready", ready))
    try:
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command[0] == "reopen":
                pipe.send(("reopened", await worker.reopen()))
                continue
            if command[0] != "phase":
                break
            _, phase, start, n = command
            pipe.send(("result", await worker.run_phase(phase, start, n)))
    finally:
        await worker.close_all()


def _process_main(pipe: Any, items: list[tuple[int, Client]], config: Config) -> None:
    """Entry point of one load-generator process."""
    raise_nofile()
    worker = _Worker(items=items, config=config)
    try:
        import uvloop

        uvloop.run(_worker_main(pipe, worker))
    except ImportError:
        asyncio.run(_worker_main(pipe, worker))


class LoadRun:
    """Clients connected from several processes, ready to run phases; use as a context manager."""

    def __init__(self, clients: list[Client], config: Config) -> None:
        self.clients = clients
        self.config = config
        self.procs: list[Any] = []
        self.pipes: list[Any] = []
        self.connections: dict[str, Any] = {}
        self.phases_run = 0

    def __enter__(self) -> "LoadRun":
        context = multiprocessing.get_context("spawn")
        procs = max(1, min(self.config.procs, len(self.clients)))
        for p in range(procs):
            items = list(enumerate(self.clients))[p::procs]
            parent, child = context.Pipe()
            process = context.Process(
                target=_process_main, args=(child, items, self.config), daemon=True
            )
            process.start()
            self.procs.append(process)
            self.pipes.append(parent)
        replies = self._collect("ready", self.config.connect_deadline + 30)
        reasons: Counter = Counter()
        for reply in replies:
            reasons.update(reply["fail_reasons"])
        self.connections = {
            "attempted": sum(r["attempted"] for r in replies),
            "opened": sum(r["opened"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "fail_reasons": dict(reasons),
            "connect_s": max(r["connect_s"] for r in replies),
        }
        return self

    def _collect(self, kind: str, timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        replies = []
        for pipe, process in zip(self.pipes, self.procs, strict=True):
            while not pipe.poll(0.2):
                if not process.is_alive():
                    raise RuntimeError(f"load-generator process exited ({process.exitcode})")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"load generator gave no {kind!r} within {timeout:.0f}s")
            tag, payload = pipe.recv()
            if tag != kind:
                raise RuntimeError(f"expected {kind!r} from the load generator, got {tag!r}")
            replies.append(payload)
        return replies

    def run_phase(self, phase: Phase, probe: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run one phase in every process at once and return the merged summary.

        ``probe("begin")`` and ``probe("end")`` are called as the measured window opens and closes.
        """
        self.phases_run += 1
        # A step that overloaded the server may have had sockets closed; the next one starts
        # with every room whole again.
        for pipe in self.pipes:
            pipe.send(("reopen",))
        reopened = sum(self._collect("reopened", self.config.connect_deadline + 30))
        start = time.monotonic() + 0.3
        for pipe in self.pipes:
            pipe.send(("phase", phase, start, self.phases_run))
        if probe is not None:
            # Let the caller sample the server over the same window the statistics cover.
            time.sleep(max(0.0, start + phase.warmup - time.monotonic()))
            probe("begin")
            time.sleep(max(0.0, start + phase.duration - time.monotonic()))
            probe("end")
        timeout = phase.duration + phase.drain + 30
        parts = [PhaseStats.from_dict(r) for r in self._collect("result", timeout)]
        summary = summarise(merge(parts), phase.duration - phase.warmup)
        summary["offered_rate_per_sender"] = phase.rate
        summary["senders"] = sum(1 for c in self.clients if c.sender)
        summary["connections"] = self.connections
        summary["reopened"] = reopened
        summary["loadgen_procs"] = len(self.procs)
        return summary

    def __exit__(self, *exc: object) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        for process in self.procs:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def room_clients(
    url_pattern: str,
    rooms: list[str],
    per_room: int,
    senders_per_room: int,
    headers_for: Any = None,
) -> list[Client]:
    """``per_room`` clients in each room, the first ``senders_per_room`` of each sending.

    ``headers_for(i)`` gives the i-th client's extra headers (its session cookie), if any.
    """
    clients = []
    for room in rooms:
        for k in range(per_room):
            headers = tuple(headers_for(len(clients))) if headers_for else ()
            clients.append(
                Client(url_pattern.format(room=room), room, k < senders_per_room, headers)
            )
    return clients


def main(argv: list[str] | None = None) -> None:
    """Command line: one run against a running server, printed as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="e.g. ws://127.0.0.1:8000/ws/rooms/{room}/")
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--per-room", type=int, default=500)
    parser.add_argument("--senders-per-room", type=int, default=5)
    parser.add_argument("--rate", type=float, action="append", help="msgs/s per sender")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--origin", default=None)
    parser.add_argument("--cookies", help="JSON file: a list of Cookie header values")
    args = parser.parse_args(argv)
    cookies: list[str] = []
    if args.cookies:
        with open(args.cookies) as handle:
            cookies = json.load(handle)

    def headers_for(i: int) -> list[tuple[str, str]]:
        return [("Cookie", cookies[i % len(cookies)])] if cookies else []

    rooms = [f"bench-{r}" for r in range(args.rooms)]
    clients = room_clients(args.url, rooms, args.per_room, args.senders_per_room, headers_for)
    config = Config(procs=args.procs, origin=args.origin)
    with LoadRun(clients, config) as run:
        results = [
            run.run_phase(Phase(rate, args.duration, args.warmup, args.drain))
            for rate in (args.rate or [4.0])
        ]
    json.dump({"config": asdict(config), "phases": results}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
