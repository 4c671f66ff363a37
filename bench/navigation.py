"""Navigation at size: the sidebar of a user in 200 conversations over 1,000,000 messages, and
scroll-back through 100,000 messages of one room (issue 10, docs/performance.md).

    python -m bench.navigation                  # PostgreSQL (throwaway cluster) and SQLite
    python -m bench.navigation --db sqlite --messages 200000   # smaller, quicker

Messages are bulk-loaded with SQL (``generate_series`` / a recursive CTE), not through the
services: the numbers are about reading. Each database runs in a child process of its own,
because Django reads ``DATABASE_URL`` once, at setup.
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.navigation")

ROOT = Path(__file__).resolve().parents[1]
ROOMS = 200
BIG_ROOM = 100_000
AUTHORS = 20
SIDEBAR_RUNS = 30
DATABASES = ["postgresql", "sqlite"]
MESSAGES = 1_000_000


def _setup() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _fill(total: int) -> dict[str, Any]:
    """The reader, 20 authors, 200 rooms the reader is in (150 public, 30 private, 20 direct),
    room 0 with ``BIG_ROOM`` messages and the others sharing the rest; 1 % deleted."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from rooms.models import Membership, Message, Room

    users = get_user_model().objects
    reader = users.create_user(username="reader", password="x")
    authors = [users.create_user(username=f"author{i}", password="x") for i in range(AUTHORS)]
    now = timezone.now()
    per_room = [BIG_ROOM] + [(total - BIG_ROOM) // (ROOMS - 1)] * (ROOMS - 1)
    per_room[1] += total - sum(per_room)
    rooms = []
    for i in range(ROOMS):
        kind = "public" if i < 150 else "private" if i < 180 else "direct"
        rooms.append(
            Room(
                kind=kind,
                name="" if kind == "direct" else f"Room {i}",
                slug=f"room-{i}",
                direct_key=f"bench-{i}" if kind == "direct" else None,
                last_seq=per_room[i],
                last_activity=now - timezone.timedelta(minutes=i),
            )
        )
    Room.objects.bulk_create(rooms)
    rooms = list(Room.objects.order_by("pk"))
    members = []
    for i, room in enumerate(rooms):
        # Read up to somewhere in the last 60 messages: counts from 0 to 59.
        members.append(Membership(room=room, user=reader, last_read_seq=per_room[i] - (i * 7) % 60))
        if room.kind == "direct":
            members.append(Membership(room=room, user=authors[i % AUTHORS]))
    Membership.objects.bulk_create(members)

    table = connection.ops.quote_name(Message._meta.db_table)
    sql, order = _insert_sql(connection.vendor, table, reader.pk, authors[0].pk)
    stamp = connection.ops.adapt_datetimefield_value(now)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        for i, room in enumerate(rooms):
            values = {"room": room.pk, "count": per_room[i], "created": stamp}
            cursor.execute(sql, [values[name] for name in order])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
    return {
        "reader": reader.pk,
        "big_room": rooms[0].pk,
        "messages": Message.objects.count(),
        "load_s": round(time.perf_counter() - started, 1),
    }


def _insert_sql(vendor: str, table: str, reader: int, first: int) -> tuple[str, list[str]]:
    """One INSERT ... SELECT of a room's messages 1..count, and its parameters' order. The
    reader writes every 10th message, the 20 authors the others; every 100th is deleted."""
    values = (
        f"%s, CASE WHEN n %% 10 = 0 THEN {reader} ELSE {first} + n %% {AUTHORS} END, n, n,"
        " CASE WHEN n %% 100 = 50 THEN '' ELSE 'message ' || n END, %s, NULL,"
        " CASE WHEN n %% 100 = 50 THEN %s ELSE NULL END, NULL, NULL"
    )
    columns = (
        "room_id, author_id, seq, changed_seq, body, created, edited, deleted, client_id,"
        " reply_to_id"
    )
    insert = f"INSERT INTO {table} ({columns}) SELECT {values}"
    if vendor == "postgresql":
        return f"{insert} FROM generate_series(1, %s) AS n", ["room", "created", "created", "count"]
    series = "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s)"
    return f"{series} {insert} FROM s", ["count", "room", "created", "created"]


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def _sidebar(reader_id: int) -> dict[str, Any]:
    """Open the sidebar (the selector every page renders) and the socket's counts."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from rooms import selectors

    reader = get_user_model().objects.get(pk=reader_id)
    with CaptureQueriesContext(connection) as queries:
        rooms = selectors.conversations(user=reader)
    page_times, socket_times = [], []
    for _ in range(SIDEBAR_RUNS):
        begun = time.perf_counter()
        selectors.conversations(user=reader)
        page_times.append(time.perf_counter() - begun)
        begun = time.perf_counter()
        selectors.conversations_unread(user=reader)
        socket_times.append(time.perf_counter() - begun)
    return {
        "rooms": len(rooms),
        "queries": len(queries),
        "unread_total": sum(r.unread for r in rooms),
        "page": _quantiles(page_times),
        "socket_counts": _quantiles(socket_times),
    }


def _scroll_back(room_id: int, page_size: int) -> dict[str, Any]:
    """From the newest to the first message, as the socket's ``history`` frames page."""
    from rooms import events, selectors
    from rooms.models import Message, Room

    room = Room.objects.get(pk=room_id)
    expected = list(
        Message.objects.filter(room=room, deleted__isnull=True)
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    seen: list[int] = []
    page_times = []
    before, more = room.last_seq + 1, True
    begun = time.perf_counter()
    while more:
        started = time.perf_counter()
        messages, more = selectors.messages_before(room=room, before=before, limit=page_size)
        frames = [events.message_payload(m, selectors.reactions_state(m)) for m in messages]
        page_times.append(time.perf_counter() - started)
        seen[:0] = [frame["seq"] for frame in frames]
        before = messages[0].seq if messages else 0
    total = time.perf_counter() - begun
    return {
        "messages": len(expected),
        "pages": len(page_times),
        "page_size": page_size,
        "exactly_once": seen == expected,
        "total_s": round(total, 2),
        "page": _quantiles(page_times),
    }


def inner(total: int) -> dict[str, Any]:
    """Fill and measure the database of this process's settings."""
    _setup()
    from django.db import connection

    filled = _fill(total)
    return {
        "database": connection.vendor,
        **filled,
        "sidebar": _sidebar(filled["reader"]),
        "scroll_back": _scroll_back(filled["big_room"], 50),
    }


def _child(env: dict[str, str], total: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.navigation", "--inner", "--messages", str(total)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if result.returncode:
        return {"error": result.stderr[-2000:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(databases: list[str], total: int, log_dir: Path) -> dict[str, Any]:
    """Measure on each database; returns ``{database: results}``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    base.update(DJANGO_SETTINGS_MODULE="chatproject.settings", SECRET_KEY="bench", DEBUG="0")
    results: dict[str, Any] = {}
    if "sqlite" in databases:
        with tempfile.TemporaryDirectory(prefix="bench-nav-") as tmp:
            env = {**base, "SQLITE_PATH": str(Path(tmp) / "nav.sqlite3")}
            logger.info("sqlite: loading %d messages", total)
            results["sqlite"] = _child(env, total)
    if "postgresql" in databases:
        from .services import postgres_server

        with postgres_server(log_dir, database="nav") as (url, _):
            logger.info("postgresql: loading %d messages", total)
            results["postgresql"] = _child({**base, "DATABASE_URL": url}, total)
    return results


def markdown(results: dict[str, Any]) -> str:
    """The numbers as a table for docs/performance.md."""
    lines = [
        "| database | messages | sidebar queries | sidebar p50 / p95 | socket counts p50 |"
        " scroll-back pages | every message once | scroll-back total | page p50 / p95 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in results.items():
        if "error" in data:
            lines.append(f"| {name} | error: {data['error'][-200:]!r} |")
            continue
        side, back = data["sidebar"], data["scroll_back"]
        lines.append(
            f"| {name} | {data['messages']:,} | {side['queries']} |"
            f" {side['page']['p50_ms']} / {side['page']['p95_ms']} ms |"
            f" {side['socket_counts']['p50_ms']} ms | {back['pages']} x {back['page_size']} |"
            f" {back['exactly_once']} | {back['total_s']} s |"
            f" {back['page']['p50_ms']} / {back['page']['p95_ms']} ms |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line; prints JSON (``--inner``) or the table, and writes bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", nargs="+", default=DATABASES)
    parser.add_argument("--messages", type=int, default=MESSAGES)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.inner:
        print(json.dumps(inner(args.messages)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = args.out / "logs" / "navigation"
    log_dir.mkdir(parents=True, exist_ok=True)
    results = run(args.db, args.messages, log_dir)
    (args.out / "navigation.json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    (args.out / "navigation.md").write_text(table)
    sys.stdout.write(table)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
