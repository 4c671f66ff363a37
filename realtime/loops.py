"""One object per running event loop: a worker process has one loop, each async test its own."""

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_loop(factory: Callable[[], T]) -> Callable[[], T]:
    """A getter of the running loop's object, made by ``factory`` on first use in that loop."""
    made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get() -> T:
        loop = asyncio.get_running_loop()
        value = made.get(loop)
        if value is None:
            value = made[loop] = factory()
        return value

    def existing() -> T | None:
        """The running loop's object if it was made, without making it."""
        return made.get(asyncio.get_running_loop())

    get.existing = existing  # type: ignore[attr-defined]
    return get
