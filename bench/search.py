"""Search over 1,000,000 stored messages: p50 and p99 of 100 queries, SQLite and PostgreSQL.

    python -m bench.search [--messages 1000000] [--queries 100] [--backends sqlite postgresql]

Each backend runs in a process of its own on the product's settings (SQLite in a temporary file,
or a private PostgreSQL), migrated, loaded in bulk (executemany into SQLite with the search
triggers on; COPY into PostgreSQL with the GIN index built after the load), then searched
through ``search.selectors.message_search``, the function the page calls: ranking, the access
rule, the page's rows and their excerpts. ``bench.run`` calls ``run`` after the targets.
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

from . import search_data

logger = logging.getLogger("bench.search")
ROOT = Path(__file__).resolve().parent.parent
ROOMS_PUBLIC, ROOMS_PRIVATE, USERS = 150, 50, 1000
# The reader is a member of this many of the private rooms: the access rule has work to do.
READER_PRIVATE = 10
CHUNK = 50_000
WARMUP = 20
ROOM_FILTER = "room-7"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _people_and_rooms() -> tuple[list[int], list[int]]:
    """Users, rooms and memberships in bulk; returns (room ids, user ids). The first user
    (``search-0``) is the reader."""
    from django.contrib.auth import get_user_model

    from rooms.models import Membership, Room

    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"search-{i}", password="!") for i in range(USERS)]
    )
    users = list(user_model.objects.order_by("pk").values_list("pk", flat=True))
    rooms = [Room(name=f"room {i}", slug=f"room-{i}") for i in range(ROOMS_PUBLIC)]
    rooms += [
        Room(name=f"private {i}", slug=f"private-{i}", kind=Room.Kind.PRIVATE)
        for i in range(ROOMS_PRIVATE)
    ]
    Room.objects.bulk_create(rooms)
    room_ids = list(Room.objects.order_by("pk").values_list("pk", flat=True))
    private = room_ids[ROOMS_PUBLIC:]
    members = [Membership(room_id=r, user_id=users[0]) for r in private[:READER_PRIVATE]]
    members += [Membership(room_id=r, user_id=u) for r in private for u in users[1:6]]
    Membership.objects.bulk_create(members)
    return room_ids, users


def _load(count: int, room_ids: list[int], user_ids: list[int]) -> float:
    """Store ``count`` messages in bulk; returns the seconds it took (index included)."""
    from django.db import connection, transaction

    from search import schema

    started = time.perf_counter()
    columns = "room_id, author_id, seq, changed_seq, body, created"
    rows = search_data.message_rows(count, room_ids, user_ids)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX search_message_vector")
            with cursor.cursor.copy(f"COPY rooms_message ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute("SET maintenance_work_mem = '256MB'")
            cursor.execute(schema.POSTGRES_CREATE[1])
            cursor.execute("ANALYZE rooms_message")
    else:
        # The index is built once after the load (FTS5 'rebuild', 3 x faster than the insert
        # trigger row by row); schema.index_create puts the trigger back.
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER search_message_ai")
        insert = f"INSERT INTO rooms_message ({columns}) VALUES (%s, %s, %s, %s, %s, %s)"
        batch: list[tuple] = []
        for row in rows:
            batch.append((*row[:5], row[5].isoformat(sep=" ")))
            if len(batch) == CHUNK:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.executemany(insert, batch)
                batch = []
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(insert, batch)
        schema.index_create(connection)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE rooms_room SET last_seq = (SELECT coalesce(max(seq), 0) FROM rooms_message "
            "WHERE room_id = rooms_room.id)"
        )
    return time.perf_counter() - started


def measure(count: int) -> dict[str, Any]:
    """Time ``count`` searches of the loaded database's reader, after a warm-up."""
    from django.contrib.auth import get_user_model

    from search.selectors import message_search

    reader = get_user_model().objects.get(username="search-0")
    texts = search_data.queries(count + WARMUP)
    for text in texts[count:]:  # warm the caches with other queries
        message_search(user=reader, text=text)
    timings, hits = [], []
    for index, text in enumerate(texts[:count]):
        # One query in ten searches one room (&room=).
        room = ROOM_FILTER if index % 10 == 9 else ""
        started = time.perf_counter()
        found = message_search(user=reader, text=text, room_slug=room)
        timings.append((time.perf_counter() - started) * 1000)
        hits.append(len(found.hits))
    slowest = sorted(zip(timings, texts, strict=False), reverse=True)[:5]
    return {
        "queries": count,
        "p50_ms": round(statistics.median(timings), 1),
        "p99_ms": round(_percentile(timings, 0.99), 1),
        "max_ms": round(max(timings), 1),
        "queries_with_hits": sum(1 for n in hits if n),
        "slowest": [{"ms": round(ms, 1), "q": q} for ms, q in slowest],
    }


def child(messages: int, count: int) -> dict[str, Any]:
    """Inside the product's settings: migrate, load, search; the figures as a dict."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    room_ids, user_ids = _people_and_rooms()
    load_s = _load(messages, room_ids, user_ids)
    return {
        "vendor": connection.vendor,
        "messages": messages,
        "load_s": round(load_s, 1),
        **measure(count),
    }


def _run_child(env: dict[str, str], messages: int, count: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.search", "--child"]
    command += ["--messages", str(messages), "--queries", str(count)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout.splitlines()[-1])


def run(
    log_dir: Path, messages: int = 1_000_000, count: int = 100, backends: tuple = ("sqlite", "pg")
) -> dict[str, Any]:
    """Both backends, one after the other; ``{"sqlite": {...}, "postgresql": {...}}``."""
    from .services import postgres_server

    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    base.update(DJANGO_SETTINGS_MODULE="chatproject.settings", SECRET_KEY="bench", DEBUG="0")
    base.pop("REDIS_URL", None)
    results: dict[str, Any] = {}
    if "sqlite" in backends:
        logger.info("search: SQLite, %d messages", messages)
        with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
            env = {**base, "SQLITE_PATH": f"{tmp}/db.sqlite3"}
            env.pop("DATABASE_URL", None)
            results["sqlite"] = _run_child(env, messages, count)
    if "pg" in backends:
        logger.info("search: PostgreSQL, %d messages", messages)
        log_dir.mkdir(parents=True, exist_ok=True)
        with postgres_server(log_dir, database="search") as (url, _):
            results["postgresql"] = _run_child({**base, "DATABASE_URL": url}, messages, count)
    return results


def markdown(results: dict[str, Any]) -> str:
    """The figures as a Markdown table ("" when the search benchmark did not run)."""
    if not results:
        return ""
    lines = [
        "",
        "## Search",
        "",
        "| database | messages | load s | p50 ms | p99 ms | max ms | queries with hits |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, got in results.items():
        if "error" in got:
            lines.append(f"| {name} | error: {got['error'].splitlines()[-1]} | | | | | |")
            continue
        lines.append(
            f"| {name} | {got['messages']:,} | {got['load_s']} | {got['p50_ms']} | "
            f"{got['p99_ms']} | {got['max_ms']} | {got['queries_with_hits']}/{got['queries']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "pg"], default=["sqlite", "pg"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.messages, args.queries)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    with tempfile.TemporaryDirectory(prefix="bench-search-logs-") as log_dir:
        results = run(Path(log_dir), args.messages, args.queries, tuple(args.backends))
    print(json.dumps(results, indent=1))
    sys.stdout.write(markdown(results))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
