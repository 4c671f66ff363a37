"""Set up the product's database for a benchmark: users with sessions, rooms; or count messages.

Run with the product's settings and environment (``DJANGO_SETTINGS_MODULE=chatproject.settings``)::

    python -m bench.seed --users 6000 --rooms 500 --out seed.json
    python -m bench.seed --count-messages

Each user gets a session exactly as ``django.contrib.auth.login`` stores it, so thousands of
sockets can be logged in without thousands of password hashes (one costs ~0.3 s of CPU).
"""

import argparse
import json
import sys
from importlib import import_module
from typing import Any

PASSWORD = "bench-password-not-secret"
USERNAME = "bench-user-{}"
ROOM = "bench-{}"


def _setup() -> None:
    import django

    django.setup()


def users_ensure(count: int) -> list[Any]:
    """The first ``count`` benchmark users, created with one shared password hash if missing."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    user_model = get_user_model()
    names = [USERNAME.format(i) for i in range(count)]
    existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    password = make_password(PASSWORD)
    missing = [user_model(username=n, password=password) for n in names if n not in existing]
    user_model.objects.bulk_create(missing, batch_size=1000)
    by_name = {u.username: u for u in user_model.objects.filter(username__in=names)}
    return [by_name[n] for n in names]


def rooms_ensure(count: int) -> list[str]:
    """Slugs of the first ``count`` benchmark rooms, created through the product's service."""
    from rooms.models import Room
    from rooms.services import room_create

    slugs = []
    for i in range(count):
        room = Room.objects.filter(name=ROOM.format(i)).first()
        if room is None:
            room = room_create(name=ROOM.format(i))
        slugs.append(room.slug)
    return slugs


def sessions_create(users: list[Any]) -> list[str]:
    """One logged-in session per user; returns ``Cookie`` header values."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.db import transaction

    engine = import_module(settings.SESSION_ENGINE)
    cookies = []
    with transaction.atomic():
        for user in users:
            session = engine.SessionStore()
            session[SESSION_KEY] = user._meta.pk.value_to_string(user)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.create()
            cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    return cookies


def members_ensure(users: list[Any], slugs: list[str], per_room: int) -> int:
    """Make user ``i`` a member of room ``i // per_room`` (S5: every socket's sidebar has a room).

    In bulk, as a membership starts (``last_read_seq`` at the room's seq): the benchmark seeds
    thousands, and ``room_join`` would take a transaction each.
    """
    from rooms.models import Membership, Room

    rooms = {r.slug: r for r in Room.objects.filter(slug__in=slugs)}
    wanted = [
        Membership(room=rooms[slugs[i // per_room]], user=user, last_read_seq=0)
        for i, user in enumerate(users[: len(slugs) * per_room])
    ]
    for member in wanted:
        member.last_read_seq = member.room.last_seq
    Membership.objects.bulk_create(wanted, batch_size=1000, ignore_conflicts=True)
    return len(wanted)


def room_seqs(count: int) -> dict[str, int]:
    """Latest seq of the first ``count`` benchmark rooms, by slug (S5 checks that every socket
    heard every change after its start)."""
    from rooms.models import Room

    names = [ROOM.format(i) for i in range(count)]
    return dict(Room.objects.filter(name__in=names).values_list("slug", "last_seq"))


def messages_count() -> int:
    """How many messages are stored."""
    from rooms.models import Message

    return Message.objects.count()


def main(argv: list[str] | None = None) -> None:
    """Command line; prints JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--rooms", type=int, default=0)
    parser.add_argument("--out", help="write the JSON here instead of standard output")
    parser.add_argument("--members-per-room", type=int, default=0)
    parser.add_argument("--count-messages", action="store_true")
    parser.add_argument("--room-seqs", action="store_true", help="last_seq of every bench room")
    args = parser.parse_args(argv)
    _setup()
    if args.count_messages:
        result: dict[str, Any] = {"messages": messages_count()}
    elif args.room_seqs:
        result = {"seqs": room_seqs(args.rooms)}
    else:
        users = users_ensure(args.users)
        result = {
            "password": PASSWORD,
            "usernames": [u.username for u in users],
            "cookies": sessions_create(users),
            "rooms": rooms_ensure(args.rooms),
        }
        if args.members_per_room:
            per_room = args.members_per_room
            result["members"] = members_ensure(users, result["rooms"], per_room)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle)
    else:
        json.dump(result, sys.stdout)
        print()


if __name__ == "__main__":
    main()
