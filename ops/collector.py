"""Python's cycle collector, set for a server process that holds thousands of open sockets.

With CPython's defaults (a young collection every 700 new container objects), the objects of
connects and messages survive a young collection or two while still in use, are promoted, and
every time those promoted since the last full collection reach a quarter of all, a full
collection walks every object in the process: Django's and every open socket's. With 2,000
sockets in a room and 100 users coming and going a second, those full collections took 90-190
ms each, every few seconds, and held the event loop (every delivery waited): they were P1's
latency tail (docs/performance.md). Measured with ``gc.callbacks`` in the P1 server.

So, once the application is loaded: what start-up made (modules, settings, URL patterns, the
ORM's models) moves out of the collector's view for good (``gc.freeze``: it lives as long as
the process), and a young collection waits for ``YOUNG`` new container objects, by when most
of a connect's or a message's objects are freed by reference counting, never promoted.

Start-up itself runs without the collector (``collector_pause``, first thing in
chatproject/asgi.py): nearly all it makes is kept for good, and its collections on the way
cost a restarted worker 45-75 ms of its import in a reconnect storm, where the clients'
retries share the CPU, all of it in the window in which a restart refuses connects (bench S5,
docs/performance.md). Nor is there a full collection at the end: of the ~100,000 objects
start-up leaves, ~1,300 are garbage (~0.2 MB, frozen with the rest), and walking them all took
a restarted worker 46-114 ms in that window. The first full collection comes after ten of the
middle generation's, as CPython's own rule has it; from then on each waits, as usual, for a
quarter as many objects to be promoted as the previous one left.
"""

import gc

YOUNG = 50_000


def collector_pause() -> None:
    """No collections until ``collector_tune`` (call first thing, before start-up's imports)."""
    gc.disable()


def collector_tune() -> None:
    """Freeze what exists now and make young collections rarer (call once, after start-up)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
    gc.enable()
