"""S5, the reconnect storm: every socket reconnects after a server restart, as a browser does.

Readers (one socket each, in load-generator processes of their own) follow
``rooms/static/rooms/socket.js``: reconnect after a close with exponential backoff and jitter
(``ceiling = min(15 s, 0.5 s * 2**attempt)``, a delay drawn in ``[ceiling/2, ceiling]``; 4429
starts at attempt 5), ``?after=<known>`` where ``known`` is the highest seq with none missing
below it, a ``sync`` frame when a live seq skips one, and again 1-2 s after a refused catch-up.
Senders, in a process of their own, keep posting meanwhile and reconnect the same way.

Each reader records every seq it hears, per connection, so that at the end a seq heard twice on
one socket (doubled) and a seq stored in its room but never heard (lost) are counted against the
database's ``last_seq`` of each room. "Caught up" is the ``synced`` frame of the first socket
opened after the restart (for the bare ASGI server, which has no catch-up: the socket opening).
"""

import asyncio
import gc
import multiprocessing
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .system import machine_cpu_seconds, raise_nofile, tree_usage

# Close codes after which the browser stops reconnecting (socket.js ``STOP``).
STOP = {4401, 4403, 4404}
SEQ_TYPES = {"message", "message.edited", "message.deleted", "reactions", "member.removed"}


def backoff_s(attempt: int) -> float:
    """socket.js ``scheduleReconnect``: a delay in [ceiling/2, ceiling], ceiling doubling."""
    ceiling = min(15000, 500 * 2**attempt)
    return (ceiling / 2 + random.random() * ceiling / 2) / 1000


@dataclass(frozen=True)
class Socket:
    """One storm client: the room socket URL (no query), its room, headers, the seq it starts
    current to, and whether it sends."""

    url: str
    room: str
    headers: tuple[tuple[str, str], ...] = ()
    start_seq: int = 0
    sender: bool = False


@dataclass
class _State:
    """What one client knows and has seen (socket.js's bookkeeping plus the counters)."""

    socket: Socket
    known: int = 0
    seen: set[int] = field(default_factory=set)
    heard: set[int] = field(default_factory=set)
    doubled: int = 0
    attempt: int = 0
    syncing: bool = False
    ready: bool = False
    opened_at: float = 0.0  # monotonic time the latest socket opened
    ready_at: float = 0.0  # and caught up
    connects: int = 0
    gap_syncs: int = 0
    stopped: int | None = None
    failed_at: list[float] = field(default_factory=list)  # monotonic times connects failed


class _Process:
    """The clients of one load-generator process."""

    def __init__(self, sockets: list[Socket], origin: str | None, catch_up: bool) -> None:
        self.states = [_State(s, known=s.start_seq) for s in sockets]
        self.origin = origin
        self.catch_up = catch_up  # False for the bare ASGI server: open counts as caught up
        self.failures: Counter[str] = Counter()  # connects refused or failed, by reason
        self.closes: Counter[str] = Counter()  # sockets closed under the client, by code
        self.sent = 0
        self.send_errors = 0
        self.stop = asyncio.Event()
        self.sending = asyncio.Event()
        self.pending: set[asyncio.Future[None]] = set()

    async def client(self, state: _State, rate: float) -> None:
        while not self.stop.is_set():
            socket = state.socket
            url = f"{socket.url}?after={state.known}"
            try:
                ws = await connect(
                    url,
                    additional_headers=list(socket.headers),
                    origin=self.origin,  # type: ignore[arg-type]
                    compression=None,
                    open_timeout=20,
                    ping_interval=None,
                    close_timeout=1,
                    user_agent_header=None,
                    proxy=None,  # loopback only: not the environment's proxies per connect
                )
            except InvalidStatus as exc:
                self.failures[f"http {exc.response.status_code}"] += 1
                state.failed_at.append(time.monotonic())
                await self.wait_backoff(state)
                continue
            except Exception as exc:
                self.failures[type(exc).__name__] += 1
                state.failed_at.append(time.monotonic())
                await self.wait_backoff(state)
                continue
            state.attempt = 0
            state.connects += 1
            state.opened_at = time.monotonic()
            state.syncing = state.ready = False
            if not self.catch_up:
                state.ready, state.ready_at = True, state.opened_at
            this = set()
            sender = asyncio.ensure_future(self.send_loop(ws, rate)) if socket.sender else None
            try:
                async for raw in ws:
                    self.on_frame(state, ws, orjson.loads(raw), this)
            except ConnectionClosed:
                pass
            finally:
                if sender is not None:
                    sender.cancel()
            code = ws.close_code
            if self.stop.is_set():
                return
            self.closes[str(code)] += 1
            if code in STOP:
                state.stopped = code
                return
            if code == 4429:
                state.attempt = max(state.attempt, 5)
            await self.wait_backoff(state)

    async def wait_backoff(self, state: _State) -> None:
        delay = backoff_s(state.attempt)
        state.attempt += 1
        try:
            await asyncio.wait_for(self.stop.wait(), delay)
        except TimeoutError:
            pass

    def on_frame(self, state: _State, ws: Any, frame: dict[str, Any], this: set[int]) -> None:
        """socket.js ``onFrame``: note seqs, end a catch-up, ask for a gap or a refused sync."""
        kind = frame.get("type")
        if kind in SEQ_TYPES:
            seq = frame.get("seq")
            if not isinstance(seq, int):
                return
            if seq in this:
                state.doubled += 1  # the server sent it twice on one socket
            this.add(seq)
            state.heard.add(seq)
            if seq <= state.known:
                return
            state.seen.add(seq)
            self.advance(state)
            if state.seen:
                self.request_sync(state, ws, gap=True)
        elif kind == "synced":
            state.syncing = False
            state.known = max(state.known, frame.get("last_seq", 0))
            self.advance(state)
            if frame.get("more") or state.seen:
                self.request_sync(state, ws)
            if not state.ready and not state.syncing:
                state.ready, state.ready_at = True, time.monotonic()
        elif kind == "error" and frame.get("code") == "rate_limited" and state.syncing:
            state.syncing = False
            loop = asyncio.get_running_loop()
            loop.call_later(1 + random.random(), self.request_sync, state, ws)

    @staticmethod
    def advance(state: _State) -> None:
        state.seen = {seq for seq in state.seen if seq > state.known}
        while state.known + 1 in state.seen:
            state.known += 1
            state.seen.discard(state.known)

    def request_sync(self, state: _State, ws: Any, gap: bool = False) -> None:
        if state.syncing or not self.catch_up:
            return
        state.syncing = True
        state.gap_syncs += gap
        task = asyncio.ensure_future(self._send(ws, {"type": "sync", "after": state.known}))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _send(self, ws: Any, frame: dict[str, Any]) -> None:
        try:
            await ws.send(orjson.dumps(frame).decode())
        except ConnectionClosed:
            pass

    async def send_loop(self, ws: Any, rate: float) -> None:
        """Post ``rate`` messages/s while ``sending`` is set (a sender's socket)."""
        await asyncio.sleep(random.uniform(0, 1 / rate))
        while True:
            await self.sending.wait()
            body = f"S5 {self.sent} {time.monotonic_ns()}"
            try:
                await ws.send(orjson.dumps({"type": "message", "body": body}).decode())
                self.sent += 1
            except ConnectionClosed:
                self.send_errors += 1
                return
            await asyncio.sleep(1 / rate)

    def status(self, since: float) -> dict[str, Any]:
        """How many clients have caught up on a socket opened after ``since``."""
        readers = [s for s in self.states if not s.socket.sender]
        done = [s for s in readers if s.ready and s.opened_at > since]
        return {
            "readers": len(readers),
            "caught_up": len(done),
            "last_ready_s": max((s.ready_at - since for s in done), default=None),
            "stopped": sum(1 for s in readers if s.stopped),
        }

    def tally(self, since: float, seqs: dict[str, int] | None) -> dict[str, Any]:
        """Lost and doubled seqs against the rooms' stored ``last_seq`` (None: not checked)."""
        readers = [s for s in self.states if not s.socket.sender]
        lost = 0
        for state in readers if seqs is not None else ():
            wanted = range(state.socket.start_seq + 1, seqs.get(state.socket.room, 0) + 1)
            lost += sum(1 for seq in wanted if seq not in state.heard)
        return {
            **self.status(since),
            "ready_s": sorted(s.ready_at - since for s in readers if s.ready),
            "opened_s": [s.opened_at - since for s in readers if s.opened_at > since],
            "failed_s": [t - since for s in readers for t in s.failed_at if t > since],
            "lost": lost if seqs is not None else None,
            "doubled": sum(s.doubled for s in readers),
            "gap_syncs": sum(s.gap_syncs for s in readers),
            "connects": sum(s.connects for s in self.states),
            "failures": dict(self.failures),
            "closes": dict(self.closes),
            "sent": self.sent,
            "send_errors": self.send_errors,
        }


async def _main(pipe: Any, proc: _Process, rate: float) -> None:
    loop = asyncio.get_running_loop()
    # The first connects are spread over a second, as pages open; the storm comes later.
    tasks = []
    for state in proc.states:
        tasks.append(asyncio.ensure_future(proc.client(state, rate)))
        await asyncio.sleep(1.0 / max(1, len(proc.states)))
    while True:
        command, arg = await loop.run_in_executor(None, pipe.recv)
        if command == "status":
            pipe.send(proc.status(arg))
        elif command == "send":
            proc.sending.set()
            pipe.send(None)
        elif command == "hold":
            proc.sending.clear()
            pipe.send(proc.sent)
        elif command == "tally":
            since, seqs = arg
            pipe.send(proc.tally(since, seqs))
            proc.stop.set()
            await asyncio.wait(tasks, timeout=5)
            return


def _process_main(
    pipe: Any, sockets: list[Socket], origin: str | None, catch_up: bool, rate: float
):
    raise_nofile()
    # A client process lives for one storm (under a minute). The collector's full collections
    # over its thousands of connection objects took 1.3 s of CPU per process in a storm
    # (gc.callbacks, 2026-11-27): CPU the server under test needs on the same two cores, and
    # pauses that hold every client of the process. Nothing here needs cycles freed that soon.
    gc.disable()
    proc = _Process(sockets, origin, catch_up)
    try:
        import uvloop

        uvloop.run(_main(pipe, proc, rate))
    except ImportError:
        asyncio.run(_main(pipe, proc, rate))


class Storm:
    """Reader processes plus one sender process; use as a context manager."""

    def __init__(
        self,
        readers: list[Socket],
        senders: list[Socket],
        origin: str | None,
        *,
        catch_up: bool,
        rate: float,
        procs: int = 2,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        groups = [readers[p::procs] for p in range(procs)] + [senders]
        self.pipes = []
        self.procs = []
        for group in groups:
            parent, child = context.Pipe()
            process = context.Process(
                target=_process_main, args=(child, group, origin, catch_up, rate), daemon=True
            )
            self.pipes.append(parent)
            self.procs.append(process)

    def __enter__(self) -> "Storm":
        for process in self.procs:
            process.start()
        return self

    def ask(self, command: str, arg: Any = None, pipes: list[Any] | None = None) -> list[Any]:
        """Send a command to every process (or ``pipes``) and collect the replies."""
        pipes = self.pipes if pipes is None else pipes
        for pipe in pipes:
            pipe.send((command, arg))
        replies = []
        for pipe in pipes:
            if not pipe.poll(60):
                raise TimeoutError(f"a storm process gave no answer to {command!r}")
            replies.append(pipe.recv())
        return replies

    def readers_status(self, since: float) -> dict[str, Any]:
        """Caught-up readers, summed over the reader processes."""
        parts = self.ask("status", since, self.pipes[:-1])
        return {
            "readers": sum(p["readers"] for p in parts),
            "caught_up": sum(p["caught_up"] for p in parts),
            "stopped": sum(p["stopped"] for p in parts),
            "last_ready_s": max((p["last_ready_s"] or 0 for p in parts), default=0),
        }

    def __exit__(self, *exc: object) -> None:
        for process in self.procs:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _poll(storm: Storm, since: float, want: int, limit: float) -> tuple[dict[str, Any], list]:
    """Poll the readers until ``want`` are caught up (or stopped) or ``limit`` seconds pass.

    Readers count as caught up on a socket opened after ``since`` (0: any socket)."""
    series = []
    begun = time.monotonic()
    while True:
        status = storm.readers_status(since)
        elapsed = time.monotonic() - begun
        series.append((round(elapsed, 2), status["caught_up"]))
        if status["caught_up"] + status["stopped"] >= want or elapsed > limit:
            return status, series
        time.sleep(0.25)


def _timeline(parts: list[dict[str, Any]], step: float = 0.25) -> list[list[float]]:
    """Per ``step`` seconds after the SIGTERM: readers' connects failed, sockets opened, and
    sockets caught up (where the storm's time goes: the server down, handshakes, catch-ups)."""
    counts: dict[int, list[int]] = {}
    for column, key in enumerate(("failed_s", "opened_s", "ready_s")):
        for t in (t for p in parts for t in p[key] if t >= 0):
            counts.setdefault(int(t / step), [0, 0, 0])[column] += 1
    return [[round(b * step, 2), *row] for b, row in sorted(counts.items())]


@dataclass(frozen=True)
class _Cpu:
    """CPU seconds used so far, at one moment: the machine, the server's process tree, each
    service (PostgreSQL, Redis), the storm's load-generator processes."""

    at: float
    machine: float
    server: float
    services: dict[str, float]
    loadgen: float


def _cpu_now(running: Any, storm: "Storm") -> _Cpu:
    return _Cpu(
        at=time.monotonic(),
        machine=machine_cpu_seconds(),
        server=running.server.usage().cpu_s,
        services={s.name: s.usage().cpu_s for s in running.services},
        loadgen=sum(tree_usage(p.pid).cpu_s for p in storm.procs if p.pid is not None),
    )


def _cpu_shares(begin: _Cpu, end: _Cpu) -> dict[str, Any]:
    """Percent of one core each used between two moments (the machine's is of all its cores
    together, so 200 on two busy cores): whether a storm waits or is bound by the CPU, and
    whose."""
    span = max(end.at - begin.at, 1e-9)

    def pct(before: float, after: float) -> float:
        return round(100.0 * (after - before) / span, 1)

    return {
        "s": round(span, 2),
        "machine_pct": pct(begin.machine, end.machine),
        "server_pct": pct(begin.server, end.server),
        "services_pct": {n: pct(begin.services[n], end.services[n]) for n in end.services},
        "loadgen_pct": pct(begin.loadgen, end.loadgen),
    }


def s5_storm(running: Any, timing: Any) -> dict[str, Any]:
    """S5: readers in rooms, senders posting; SIGTERM the server, start it, time the storm."""
    if timing.s5_restart == "hup" and running.workers < 2:
        # One uvicorn process has no supervisor to replace it: SIGHUP would just end it.
        return {"error": "--s5-restart hup needs several workers (uvicorn's supervisor)"}
    count, rooms = timing.s5_clients, running.room_slugs(timing.s5_rooms)
    per_room = -(-count // len(rooms))
    start = running.room_seqs(len(rooms)) if running.stores_messages else {}
    pattern = running.ws_pattern
    readers = [
        Socket(
            pattern.format(room=rooms[i // per_room]),
            rooms[i // per_room],
            tuple(running.headers_for(i)),
            start.get(rooms[i // per_room], 0),
        )
        for i in range(count)
    ]
    step = max(1, len(rooms) // timing.s5_senders)
    senders = [
        Socket(
            pattern.format(room=rooms[j * step % len(rooms)]),
            rooms[j * step % len(rooms)],
            tuple(running.headers_for(count + j)),
            sender=True,
        )
        for j in range(timing.s5_senders)
    ]
    out: dict[str, Any] = {"clients": count, "rooms": len(rooms), "senders": len(senders)}
    with Storm(
        readers,
        senders,
        running.base_url,
        catch_up=running.stores_messages,
        rate=timing.s5_rate,
        procs=timing.procs,
    ) as storm:
        begun = time.monotonic()
        status, _ = _poll(storm, 0.0, count, timing.s5_limit)
        out["initial"] = {"connected": status["caught_up"], "s": time.monotonic() - begun}
        storm.ask("send", pipes=storm.pipes[-1:])
        time.sleep(timing.s5_before)
        restart = time.monotonic()
        out["restart"] = timing.s5_restart
        serving = None
        if timing.s5_restart == "hup":
            # No CPU figures: the old workers' CPU leaves the server's tree as they exit.
            running.server.signal(signal.SIGHUP)  # the server never stops serving
        else:
            running.server.stop()
            out["stop_s"] = time.monotonic() - restart
            running.server.start(settle=False)
            out["serving_s"] = time.monotonic() - restart
            # From the new server's first answer to the last socket caught up: the storm's work.
            serving = _cpu_now(running, storm)
        status, series = _poll(storm, restart, count, timing.s5_limit)
        if serving is not None:
            out["cpu_serving"] = _cpu_shares(serving, _cpu_now(running, storm))
        out["caught_up"] = status["caught_up"]
        out["stopped"] = status["stopped"]
        out["all_caught_up_s"] = status["last_ready_s"] if status["caught_up"] == count else None
        out["series"] = series
        time.sleep(timing.s5_after)
        out["sent"] = sum(storm.ask("hold", pipes=storm.pipes[-1:]))
        time.sleep(2.0)  # the last messages' deliveries, and catch-ups still under way
        final = running.room_seqs(len(rooms)) if running.stores_messages else None
        parts = storm.ask("tally", (restart, final))
    out["timeline"] = _timeline(parts[:-1])
    ready = sorted(s for p in parts[:-1] for s in p["ready_s"] if s >= 0)
    out["ready_s"] = (
        {
            f"p{round(q * 100)}": ready[min(len(ready) - 1, int(q * len(ready)))]
            for q in (0.5, 0.9, 0.99)
        }
        if ready
        else {}
    )
    for key in ("lost", "doubled", "gap_syncs"):
        values = [p[key] for p in parts[:-1]]
        out[key] = None if None in values else sum(values)
    out["connects"] = sum(p["connects"] for p in parts)
    out["failures"] = dict(sum((Counter(p["failures"]) for p in parts), Counter()))
    out["closes"] = dict(sum((Counter(p["closes"]) for p in parts), Counter()))
    out["send_errors"] = parts[-1]["send_errors"]
    if final is not None:
        out["stored"] = sum(final.values()) - sum(start.values())
    return out
