"""Refuse to serve with the in-memory channel layer from more than one process.

The in-memory layer lives inside one process: with several workers (``uvicorn --workers 4``,
gunicorn, two servers on one database) users on different processes would silently not see
each other. Each server process claims an exclusive lock tied to its database at start-up (an
ASGI lifespan step, see ``ops.asgi``); a second process cannot take it and refuses to start,
naming the fix. The kernel releases the lock when its holder exits, even on kill -9.
"""

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings

from .checks import in_memory_layer_used

_held: list[int] = []


class SeveralProcessesError(RuntimeError):
    """Another server process already uses the in-memory channel layer on this database."""


def _lock_path() -> Path:
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]) != ":memory:":
        return Path(f"{database['NAME']}.in-memory-layer.lock")
    # Another database: processes on this machine that share it share this lock.
    key = "|".join(str(database.get(k, "")) for k in ("ENGINE", "HOST", "PORT", "NAME"))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"chatproject-{digest}.in-memory-layer.lock"


def in_memory_layer_claim() -> None:
    """With the in-memory layer, make this process the only server of its database.

    Raises ``SeveralProcessesError`` when another live process holds the claim. Does nothing
    with any other layer, or when this process already holds it.
    """
    if not in_memory_layer_used() or _held:
        return
    path = _lock_path()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SeveralProcessesError(
            f"Refusing to start: another server process (pid {holder}) already serves this "
            "database with the in-memory channel layer, which cannot cross processes, so "
            "users on different workers would not see each other's messages. "
            "Fix: set REDIS_URL (e.g. REDIS_URL=redis://127.0.0.1:6379/0) to share one "
            "channel layer between all workers, or run one worker (--workers 1). "
            f"(lock: {path})"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held.append(fd)  # kept open for the life of the process: closing it would release
