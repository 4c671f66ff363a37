"""Redis commands of many coroutines sent together: one pipeline, one round trip, per moment.

redis-py's per-command path (a pooled connection, its health check, the retry wrapper, a round
trip) costs more than what Redis does for a small command. Where every socket or frame sends
its own command, thousands of them at once (a reconnect storm's joins and socket counts, a
worker's sockets closing on shutdown, a busy room's rate checks) queue here instead: the
commands asked for while the loop runs one step go out in one pipeline, and those asked for
while it is under way in the next (docs/performance.md).
"""

import asyncio
from collections.abc import Callable
from typing import Any


class Pipelined:
    """A queue of Redis commands for one client (``client()`` gives it) on one event loop."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self.client = client
        self.waiting: list[tuple[tuple[tuple[Any, ...], ...], asyncio.Future[list[Any]]]] = []
        self.sender: asyncio.Task[None] | None = None

    async def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` (each ``(name, *args)``) with the others waiting; their replies.

        Raises the first command's error, or the pipeline's, as the command alone would."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.waiting.append((commands, future))
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._send_all(), name="redis-pipelined")
        return await future

    async def _send_all(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                async with self.client().pipeline(transaction=False) as pipe:
                    for commands, _ in batch:
                        for command in commands:
                            pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                replies = [exc] * sum(len(commands) for commands, _ in batch)
            start = 0
            for commands, future in batch:
                own = replies[start : start + len(commands)]
                start += len(commands)
                if future.done():  # its caller was cancelled
                    continue
                error = next((reply for reply in own if isinstance(reply, Exception)), None)
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(own)
