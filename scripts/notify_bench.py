#!/usr/bin/env python3
"""How long sending one notification to every user takes, and how much memory it needs.

    python scripts/notify_bench.py                # 100,000 users, a throwaway SQLite file
    DATABASE_URL=postgres://... python scripts/notify_bench.py --users 100000

Creates the users (once; they are kept in the database between runs), then times ``notify()``
to everyone: the batched inserts of one row per user and the single broadcast. Reports seconds,
the peak of Python allocations during the send (tracemalloc) and the process's peak RSS, and
how many group_send calls the send made. Use an empty, throwaway database: it writes rows.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=None, help="users per insert batch")
    parser.add_argument("--runs", type=int, default=3, help="notifications sent (timed each)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ.setdefault("SECRET_KEY", "notify-bench-only")
    os.environ.pop("REDIS_URL", None)
    if not os.environ.get("DATABASE_URL"):
        path = Path(tempfile.gettempdir()) / f"notify-bench-{args.users}.sqlite3"
        os.environ["SQLITE_PATH"] = str(path)
    import django

    django.setup()

    from channels.layers import get_channel_layer
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from notifications.services import BATCH_SIZE, notify

    call_command("migrate", verbosity=0)
    users = get_user_model()
    have = users.objects.count()
    if have < args.users:
        started = time.perf_counter()
        for start in range(have, args.users, 5000):  # in chunks, so RSS reflects the send
            users.objects.bulk_create(
                [
                    users(username=f"bench{i:07d}", password="!")
                    for i in range(start, min(start + 5000, args.users))
                ]
            )
        print(f"created {args.users - have:,} users in {time.perf_counter() - started:.1f}s")
    total = users.objects.filter(is_active=True).count()

    layer = get_channel_layer()
    sends: list[str] = []
    group_send = layer.group_send

    async def counted(group, message):
        sends.append(group)
        await group_send(group, message)

    layer.group_send = counted
    batch = args.batch or BATCH_SIZE
    vendor = connection.vendor
    print(f"database: {vendor}; active users: {total:,}; batch: {batch:,}")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS before sending: {rss_before:.0f} MiB")
    for run in range(1, args.runs + 1):
        sends.clear()
        tracemalloc.start()
        started = time.perf_counter()
        result = notify(text=f"Bench notification {run}", batch_size=batch)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"run {run}: {result.recipients:,} users in {elapsed:.2f}s "
            f"({result.recipients / elapsed:,.0f} users/s); peak Python allocations "
            f"{peak / 2**20:.1f} MiB; process peak RSS {rss:.0f} MiB; "
            f"group_send calls: {len(sends)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
