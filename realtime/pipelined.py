"""Redis commands of many coroutines sent together: one pipeline, one round trip, per moment.

redis-py's per-command path (a pooled connection, its health check, the retry wrapper, a round
trip) costs more than what Redis does for a small command. Where every socket or frame sends
its own command, thousands of them at once (a reconnect storm's joins and socket counts, a
worker's sockets closing on shutdown, a busy room's rate checks) queue here instead: the
commands asked for while the loop runs one step go out in one pipeline, and those asked for
while it is under way in the next (docs/performance.md). Inside a pipeline, redis-py still
packs and reads every command on its own (~15 µs each): ``Coalesced`` makes the same read asked
for many times, or many writes of one shape, one command, and ``zrem_pairs`` many removals a
script call per ``SCRIPT_KEYS`` keys.
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


class Coalesced:
    """Calls made in the same moment that one command list answers for all of them.

    ``ask(key, item)`` waits for ``commands(key, items)``: the items asked for with the same key
    while the loop ran one step, sent once through ``pipelined()`` (so in one pipeline with the
    moment's other commands). Every caller gets the replies, or the error. For a read that many
    sockets make at once (the same key read again before it went out: one read answers all of
    them, each asked before it was sent) and for writes of one shape over many keys (group joins:
    one script over all the keys instead of two commands per key).
    """

    def __init__(
        self,
        pipelined: Callable[[], Pipelined],
        commands: Callable[[Any, list[Any]], list[tuple[Any, ...]]],
    ) -> None:
        self.pipelined = pipelined
        self.commands = commands
        self.waiting: dict[Any, tuple[list[Any], asyncio.Future[list[Any]]]] = {}
        self.senders: set[asyncio.Task[None]] = set()  # held until done (the loop's are weak)

    async def ask(self, key: Any, item: Any = None) -> list[Any]:
        entry = self.waiting.get(key)
        if entry is None:
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            # Retrieved here too, so that an error every caller stopped waiting for is no
            # "never retrieved" warning.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            entry = self.waiting[key] = ([], future)
            sender = asyncio.ensure_future(self._send(key))
            self.senders.add(sender)
            sender.add_done_callback(self.senders.discard)
        entry[0].append(item)
        # Shielded: a caller that is cancelled must not cancel the others' reply.
        return await asyncio.shield(entry[1])

    async def _send(self, key: Any) -> None:
        items, future = self.waiting.pop(key)
        try:
            replies = await self.pipelined().execute(*self.commands(key, items))
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(replies)


# Many (key, member) removals in one call: KEYS the keys, ARGV the member of each.
_ZREM_PAIRS_LUA = """
for i, key in ipairs(KEYS) do
    redis.call('ZREM', key, ARGV[i])
end
return #KEYS
"""
# Keys per script call over many keys (``zrem_pairs``, the layer's joins): thousands of them
# (a stopping worker's, a worker's periodic rejoin) are cut into calls of this many, so that no
# one call holds Redis for long.
SCRIPT_KEYS = 500


def script_chunks(items: list[Any]) -> list[list[Any]]:
    """``items`` cut into lists of ``SCRIPT_KEYS``, for a script call each."""
    return [items[i : i + SCRIPT_KEYS] for i in range(0, len(items), SCRIPT_KEYS)]


def zrem_pairs(pairs: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    """Commands that remove each ``(key, member)``: one script call per ``SCRIPT_KEYS`` pairs
    instead of a ZREM each (a stopping worker's 2,500 sockets leave ~3,000 groups and uncount
    2,500 sockets, S5)."""
    return [
        ("EVAL", _ZREM_PAIRS_LUA, len(chunk), *(k for k, _ in chunk), *(m for _, m in chunk))
        for chunk in script_chunks(pairs)
    ]
