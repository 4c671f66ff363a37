"""A room's catch-up (``?after=`` and ``sync``), read and serialised once for every socket of a
process that asks for the same one.

After a restart every socket of a room reconnects with the same ``after`` (they all heard the
same frames before it), so without this each process read and serialised each room's catch-up
once per socket (S5, docs/performance.md). A catch-up is fully determined by the room, ``after``,
the limit and the room's seq: every change to a room (a message, an edit, a deletion, a
reaction, a removal) takes the next seq, so while the room's seq stays the same, so does its
catch-up. The room's creation time is part of the key too, so a room id that a test database
hands out again never finds another room's entry. Entries expire after ``CATCHUP_TTL`` seconds,
for what a frame shows that is no room change (an author's username), and the whole cache holds
at most ``CATCHUP_BYTES`` of frames.
"""

import threading
import time
from typing import Any, NamedTuple

from realtime.events import frame_dumps

from . import events, selectors

CATCHUP_TTL = 10.0
CATCHUP_BYTES = 8 * 1024 * 1024


class Catchup(NamedTuple):
    """The frames that bring a client from ``after`` to ``last`` (serialised), and whether
    more changes follow (the limit cut them)."""

    frames: tuple[str, ...]
    last: int
    more: bool


class _Entry(NamedTuple):
    seq: int
    expires: float
    size: int
    catchup: Catchup


_entries: dict[tuple, _Entry] = {}
_size = 0
_lock = threading.Lock()


def catchup(
    room_id: int, after: int, limit: int, version: tuple[int, Any] | None = None
) -> Catchup:
    """Every change of the room after seq ``after``, at most ``limit`` messages.
    ``version``: the room's ``(last_seq, created)`` if the caller has just read it."""
    room_seq, created = version or selectors.room_version(room_id=room_id)
    if room_seq <= after:  # the common reconnect: nothing changed since
        return Catchup((), room_seq, False)
    key = (room_id, created, after, limit)
    now = time.monotonic()
    entry = _entries.get(key)
    if entry is not None and entry.seq == room_seq and entry.expires > now:
        return entry.catchup
    messages, last, more = selectors.changes_after(
        room_id=room_id, after=after, limit=limit, room_seq=room_seq
    )
    frames = tuple(
        frame_dumps(frame)
        for message in messages
        for frame in events.catchup_frames(message, selectors.reactions_state(message))
    )
    result = Catchup(frames, last, more)
    _keep(key, _Entry(room_seq, now + CATCHUP_TTL, sum(map(len, frames)), result))
    return result


def _keep(key: tuple, entry: _Entry) -> None:
    global _size
    if entry.size > CATCHUP_BYTES // 8:
        return
    with _lock:
        old = _entries.pop(key, None)
        _size -= old.size if old is not None else 0
        _entries[key] = entry
        _size += entry.size
        while _size > CATCHUP_BYTES or len(_entries) > 4096:
            _size -= _entries.pop(next(iter(_entries))).size


def catchups_forget() -> None:
    """Forget every kept catch-up (tests, whose databases start empty)."""
    global _size
    with _lock:
        _entries.clear()
        _size = 0
