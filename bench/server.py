"""Start a server process on a free port, wait until it serves, sample its RSS and CPU, stop it."""

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from .system import Usage, tree_pids, tree_usage

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


def tcp_ready(port: int) -> Callable[[], bool]:
    """A readiness check: something accepts TCP connections on ``port``."""

    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness check: ``url`` answers HTTP at all (any status)."""

    def check() -> bool:
        try:
            httpx.get(url, timeout=2)
            return True
        except httpx.HTTPError:
            return False

    return check


class Service:
    """One server process tree, started in its own session; use as a context manager."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        ready: Callable[[], bool],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        processes: int = 1,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.ready = ready
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.processes = processes
        self.stop_signal = stop_signal
        self.user = user
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._sampler: threading.Thread | None = None
        self._stop_sampling = threading.Event()

    @property
    def pid(self) -> int:
        """Process id of the tree's root."""
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self, timeout: float = 60, settle: bool = True) -> "Service":
        """Start the process and return once it is ready and (``settle``) its start-up work
        has settled; S5 starts it under a storm of reconnects, where it never would."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=self.user,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.process.returncode}); see {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} was not ready within {timeout:.0f}s")
            time.sleep(0.1)
        if settle:
            self._settle(deadline)
        self._stop_sampling.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _settle(self, deadline: float) -> None:
        """Wait for every worker process, then for start-up CPU (imports) to die down.

        With several workers the first one to answer is not proof the others are listening yet,
        and connections made before they are would all land on one worker.
        """
        while len(tree_pids(self.pid)) < self.processes and time.monotonic() < deadline:
            time.sleep(0.1)
        last = self.usage().cpu_s
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.usage().cpu_s
            quiet = quiet + 1 if now - last < 0.03 else 0
            last = now

    def _sample(self) -> None:
        while not self._stop_sampling.wait(0.5):
            if self.process is None or self.process.poll() is not None:
                return
            self.peak_rss = max(self.peak_rss, self.usage().rss_bytes)

    def usage(self) -> Usage:
        """RSS and CPU time summed over the process and its workers, now."""
        return tree_usage(self.pid)

    def alive(self) -> bool:
        """Whether the root process is still running."""
        return self.process is not None and self.process.poll() is None

    def signal(self, number: signal.Signals) -> None:
        """Send the tree's root ``number`` (e.g. SIGHUP: uvicorn's supervisor then replaces its
        workers one by one)."""
        assert self.process is not None, f"{self.name} is not running"
        self.process.send_signal(number)

    def stop(self, timeout: float = 10) -> None:
        """Signal the root and wait; SIGKILL its process group if anything lingers."""
        self._stop_sampling.set()
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
        try:
            # The group is the one this Service created (start_new_session), so only its own
            # leftovers (a worker that outlived its parent) are killed here.
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=timeout)
        self.process = None

    def __enter__(self) -> "Service":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
