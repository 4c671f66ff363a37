#!/usr/bin/env python3
"""Send a notification from outside Django: a cron job, a deploy hook, another program.

    python scripts/notify.py "Deploy finished" --level success --link /rooms/
    python scripts/notify.py "Your export is ready" --user alice --user bob
    python scripts/notify.py "Room closes at 6" --room general

It uses the project's settings (DJANGO_SETTINGS_MODULE, default ``chatproject.settings``, with
the same environment variables as the server: SECRET_KEY, DATABASE_URL, REDIS_URL, ...).
Connected users see the notification live only when REDIS_URL points the script and the server
at the same Redis; everyone reached finds it stored on their next page load either way.
Exit status: 0 sent, 2 bad arguments (unknown user or room, bad link, empty text).
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send a chat notification.")
    parser.add_argument("text")
    audience = parser.add_mutually_exclusive_group()
    audience.add_argument("--user", action="append", dest="users", metavar="NAME")
    audience.add_argument("--room", metavar="SLUG")
    parser.add_argument("--level", default="info")
    parser.add_argument("--link", default="")
    args = parser.parse_args(argv)

    # Django is set up once, before anything that imports models.
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    import django

    django.setup()

    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError

    from notifications.services import notify
    from rooms.models import Room

    users = room = None
    if args.users:
        found = dict(
            get_user_model()
            .objects.filter(username__in=args.users, is_active=True)
            .values_list("username", "pk")
        )
        unknown = [name for name in args.users if name not in found]
        if unknown:
            parser.error(f"unknown or inactive user(s): {', '.join(unknown)}")
        users = list(found.values())
    elif args.room:
        room = Room.objects.filter(slug=args.room).first()
        if room is None:
            parser.error(f"unknown room {args.room!r}")
    try:
        result = notify(text=args.text, level=args.level, link=args.link, users=users, room=room)
    except ValidationError as error:
        parser.error(" ".join(error.messages))
    reach = f"{result.recipients} user{'' if result.recipients == 1 else 's'}"
    print(f"Notification #{result.notification.pk} sent to {reach}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
