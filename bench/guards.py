"""What the socket defences of issue 13 cost per frame, per handshake and per session check.

python -m bench.guards [--out bench/results]   (or python -m bench.run --guards)

Each figure is the median of repeated timed batches in this process, against a private
redis-server and a throwaway SQLite database; the README's docs/security.md quotes them.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _median_us(run: Callable[[int], float], count: int, repeats: int = 7) -> float:
    """Median over ``repeats`` batches of the time per call, in microseconds."""
    return statistics.median(run(count) / count * 1e6 for _ in range(repeats))


def _timed(call: Callable[[], Any]) -> Callable[[int], float]:
    def run(count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            call()
        return time.perf_counter() - started

    return run


def _timed_async(factory: Callable[[], Any]) -> Callable[[int], float]:
    def run(count: int) -> float:
        async def many() -> float:
            started = time.perf_counter()
            for _ in range(count):
                await factory()
            return time.perf_counter() - started

        return asyncio.run(many())

    return run


def measure() -> dict[str, float]:
    """Every figure, in microseconds per call (Django set up on Redis and a fresh SQLite)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from realtime import limits
    from realtime.origin import origin_allowed
    from realtime.sessions import session_valid
    from realtime.validation import text_clean

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench-password-long-enough")
    client = Client()
    client.force_login(user)
    session_key = client.cookies["sessionid"].value
    scope = {
        "type": "websocket",
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")],
    }
    figures = {
        "origin check per handshake": _median_us(_timed(lambda: origin_allowed(scope)), 2000),
        "body check, 200 characters": _median_us(
            _timed(lambda: text_clean("word " * 40, max_length=4000)), 20000
        ),
        "body check, 4000 characters": _median_us(
            _timed(lambda: text_clean("word " * 800, max_length=4000)), 2000
        ),
        "session check (SQLite: session and user rows)": _median_us(
            _timed(lambda: session_valid(session_key, user.pk)), 300
        ),
    }
    local = limits.LocalLimits()
    figures["rate check, in process"] = _median_us(
        _timed_async(lambda: local.take(user.pk, "message")), 20000
    )

    def redis_run(count: int) -> float:
        async def many() -> float:
            redis = limits.RedisLimits()
            await redis.take(user.pk, "message")  # loads the script, opens the connection
            started = time.perf_counter()
            for _ in range(count):
                await redis.take(user.pk, "message")
            elapsed = time.perf_counter() - started
            await redis.redis.aclose()
            return elapsed

        return asyncio.run(many())

    figures["rate check, Redis (one Lua call)"] = _median_us(redis_run, 2000)
    return figures


def main(out: Path = RESULTS) -> int:
    from .services import redis_server

    with (
        tempfile.TemporaryDirectory(prefix="bench-guards-") as tmp,
        redis_server(Path(tmp)) as (redis_url, _),
    ):
        os.environ.update(
            DJANGO_SETTINGS_MODULE="chatproject.settings",
            DEBUG="1",
            SQLITE_PATH=str(Path(tmp) / "db.sqlite3"),
            REDIS_URL=redis_url,
            REDIS_PREFIX="bench",
            CHAT_RATE_BURST="1e12",
            CHAT_RATE_PER_SECOND="1e12",
        )
        os.environ.pop("DATABASE_URL", None)
        import django

        django.setup()
        figures = measure()
    out.mkdir(parents=True, exist_ok=True)
    (out / "guards.json").write_text(json.dumps(figures, indent=1) + "\n")
    lines = ["| defence | µs per call |", "|---|---|"]
    lines += [f"| {name} | {value:,.1f} |" for name, value in figures.items()]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    sys.exit(main(parser.parse_args().out))
