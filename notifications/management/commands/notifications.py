"""``manage.py notifications "text"``: send a notification to everyone, some users or a room."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.models import Notification
from notifications.selectors import active_user_ids
from notifications.services import BATCH_SIZE, notify
from ops.checks import in_memory_layer_used
from rooms.models import Room

BAR_WIDTH = 30


def users_text(count: int) -> str:
    """``1 user``, ``2 users``."""
    return f"{count:,} user{'' if count == 1 else 's'}"


class Command(BaseCommand):
    help = (
        "Send a notification. With no audience option it goes to every active user; --users "
        "names users, --room a room's members (users who posted there or joined it). Stored "
        "for everyone reached, shown live to those connected. Prints how many users it reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("text", help="What the notification says (plain text).")
        audience = parser.add_mutually_exclusive_group()
        audience.add_argument(
            "--users", nargs="+", metavar="NAME", help="Only these users (usernames)."
        )
        audience.add_argument("--room", metavar="SLUG", help="Only the members of this room.")
        parser.add_argument(
            "--level", choices=Notification.Level.values, default=Notification.Level.INFO
        )
        parser.add_argument(
            "--link", default="", help="A relative URL (/rooms/x/) or an http(s) URL to open."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count the audience; store and send nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        users = None
        room = None
        if options["users"]:
            users = self._users(options["users"])
        elif options["room"]:
            room = Room.objects.filter(slug=options["room"]).first()
            if room is None:
                raise CommandError(f"Unknown room {options['room']!r}.")
        try:
            result = notify(
                text=options["text"],
                level=options["level"],
                link=options["link"],
                users=users,
                room=room,
                dry_run=options["dry_run"],
                progress=self._progress,
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        if result.notification is None:
            self.stdout.write(
                f"Dry run: would notify {users_text(result.recipients)}; nothing stored or sent."
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Notification #{result.notification.pk} sent to {users_text(result.recipients)}."
            )
        )
        if in_memory_layer_used():
            self.stderr.write(
                self.style.WARNING(
                    "The channel layer is in-memory (REDIS_URL is not set), so a separate "
                    "process cannot reach the server's sockets: users see this notification "
                    "on their next page load, not live."
                )
            )

    def _users(self, names: list[str]) -> list[int]:
        user_ids, unknown = active_user_ids(usernames=names)
        if unknown:
            raise CommandError(f"Unknown or inactive user(s): {', '.join(unknown)}.")
        return user_ids

    def _progress(self, done: int, total: int) -> None:
        # Only long runs get a bar: a handful of users is done before it would show.
        if total <= BATCH_SIZE:
            return
        filled = BAR_WIDTH * done // total
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = f"[{bar}] {done:,}/{total:,} users"
        if self.stdout.isatty():
            self.stdout.write(f"\r{line}", ending="\n" if done >= total else "")
            self.stdout.flush()
        elif done >= total or (done // BATCH_SIZE) % 10 == 0:
            self.stdout.write(line)
