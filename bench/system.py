"""Small operating-system helpers: free ports, file-descriptor limits, process-tree usage."""

import compileall
import logging
import os
import queue
import re
import resource
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bytecode_compile(root: Path) -> None:
    """Write the project's bytecode caches, as an installed or long-running server has them.

    With ``PYTHONDONTWRITEBYTECODE`` set (as on these machines) Python never writes them, so
    every server start compiled the project's ~65 modules from source again (~35 ms, S5's
    restart); ``compileall`` writes them regardless, and every start then reads them.
    """
    skip = re.compile(r"/(\.venv|node_modules|\.git|tests)/")
    compileall.compile_dir(root, quiet=1, rx=skip)


def machine_speed(rounds: int = 3) -> dict[str, float]:
    """Two quick probes of how fast this machine is right now, to compare runs made on
    different machines (every ratio is within one run; the absolute figures are not): the
    median of ``rounds`` of a 2,000,000-step Python loop (ms) and of a thread wake-up round
    trip (µs; 2,000 of them), which the servers' database threads pay for each hand-off.
    Machines of the same kind have differed by far more than a change's effect
    (docs/performance.md, the seventh session)."""
    loops, wakes = [], []
    for _ in range(rounds):
        begun = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        loops.append((time.perf_counter() - begun) * 1000)
        there: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        back: queue.SimpleQueue[int] = queue.SimpleQueue()
        thread = threading.Thread(target=_echo, args=(there, back), daemon=True)
        thread.start()
        begun = time.perf_counter()
        for i in range(2000):
            there.put(i)
            back.get(timeout=5)
        wakes.append((time.perf_counter() - begun) / 2000 * 1e6)
        there.put(None)
        thread.join(timeout=5)
    return {
        "python_loop_ms": round(statistics.median(loops), 1),
        "thread_wake_us": round(statistics.median(wakes), 1),
    }


def _echo(there: "queue.SimpleQueue[int | None]", back: "queue.SimpleQueue[int]") -> None:
    while (item := there.get()) is not None:
        back.put(item)


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, all processes) since boot."""
    total, idle = _cpu_times()
    return (total - idle) / _TICK


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    # guest time is already counted in user time
    total = sum(fields[:8])
    return total, fields[3] + fields[4]  # total, idle + iowait


def machine_busy(seconds: float = 1.0) -> float:
    """Percent of the whole machine's CPU in use over the next ``seconds``."""
    total0, idle0 = _cpu_times()
    time.sleep(seconds)
    total1, idle1 = _cpu_times()
    return 100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0))


def wait_quiet(limit_s: float, busy_pct: float = 15.0) -> float:
    """Wait up to ``limit_s`` for other work on the machine to stop; returns how busy it was."""
    deadline = time.monotonic() + limit_s
    busy = machine_busy()
    while busy > busy_pct and time.monotonic() < deadline:
        logger.info("machine %.0f%% busy with other work; waiting", busy)
        busy = machine_busy(2.0)
    return busy


def own_cpu_seconds() -> float:
    """User plus system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Usage:
    """Resident memory and CPU time summed over a process tree at one moment."""

    rss_bytes: int
    cpu_s: float
    processes: int


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds, RSS bytes) of one process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after its last ")".
    fields = raw[raw.rindex(b")") + 2 :].split()
    ppid = int(fields[1])
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    rss = int(fields[21]) * _PAGE
    return ppid, cpu, rss


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)] = stat[0]
    found, frontier = [root], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found.extend(children)
        frontier.extend(children)
    return found


def tree_usage(root: int) -> Usage:
    """RSS and CPU time summed over ``root`` and its descendants."""
    rss = 0
    cpu = 0.0
    count = 0
    for pid in tree_pids(root):
        stat = _stat(pid)
        if stat is not None:
            cpu += stat[1]
            rss += stat[2]
            count += 1
    return Usage(rss_bytes=rss, cpu_s=cpu, processes=count)
