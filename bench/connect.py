"""What one socket costs the server to open and close: CPU per socket at P1's churn.

100 sockets a second open in a room and each closes a second later (P1's churner, without the
2,000 steady sockets and the senders), for ``SECONDS``, twice (the second run is reported
too: the first warms caches); the server's CPU comes from ``/proc`` (bench.system). Run it on
the bare ASGI ceiling and on the product in the same invocation, and compare:

    python -m bench.connect                                 # asgi, then product-embedded
    python -m bench.connect --targets asgi product-prod
"""

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

from .presence import RESULTS, _churn, members_seed
from .scenarios import FULL, warm_up
from .system import raise_nofile
from .targets import TARGETS, Needs

POOL = 201  # users enough that a visitor never meets itself (P1's churner pool)
SECONDS = 8.0


def connect_cost(name: str, log_dir: Path) -> list[dict[str, Any]]:
    """Two churn runs on a fresh ``name`` target: sockets opened, failed, server ms per socket."""
    runs = []
    with TARGETS[name](Needs(users=POOL + 10, rooms=1), log_dir) as running:
        room = running.room_slugs(1)[0]
        cookies = [""] * POOL
        if running.stores_messages:
            members_seed(running.env, room, POOL + 10)
            cookies = [running.headers_for(i)[0][1] for i in range(POOL)]
        warm_up(running, FULL)
        url = running.ws_pattern.format(room=room)
        for _ in range(2):
            before, started = running.server.usage(), time.monotonic()
            out = asyncio.run(_churn(url, running.base_url, cookies, SECONDS))
            cpu_s = running.server.usage().cpu_s - before.cpu_s
            opened = max(1, out["visits_opened"])
            runs.append(
                {
                    "opened": out["visits_opened"],
                    "failed": out["visits_failed"],
                    "server_cpu_pct": 100 * cpu_s / (time.monotonic() - started),
                    "server_ms_per_socket": 1000 * cpu_s / opened,
                }
            )
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["asgi", "product-embedded"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    raise_nofile()
    for name in args.targets:
        for run in connect_cost(name, RESULTS / "logs" / "connect"):
            print(name, {k: round(v, 2) for k, v in run.items()}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
