"""What a ``realtime.pipelined.Pipelined`` sends, for tests that count Redis commands."""

from typing import Any


def commands_recorded(pipelined: Any) -> list[tuple[Any, ...]]:
    """Record every command ``pipelined`` is asked to send from now on, in the returned list."""
    sent: list[tuple[Any, ...]] = []
    execute = pipelined.execute

    async def recorded(*commands: tuple[Any, ...]) -> list[Any]:
        sent.extend(commands)
        return await execute(*commands)

    pipelined.execute = recorded
    return sent
