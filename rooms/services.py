"""Writes of rooms and messages; each write announces itself through ``rooms.events``."""

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from notifications.services import mentions_notify

from . import events
from .models import Membership, Message, Room


class RoomNameTaken(Exception):
    """Another room already has that name."""


def _unique_slug(name: str) -> str:
    base = slugify(name, allow_unicode=True)[:90] or "room"
    slug, n = base, 1
    while Room.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def room_create(*, name: str, created_by: AbstractBaseUser | None = None) -> Room:
    """Create a room with a unique slug derived from its name."""
    name = name.strip()
    if Room.objects.filter(name__iexact=name).exists():
        raise RoomNameTaken(name)
    try:
        with transaction.atomic():
            room = Room.objects.create(name=name, slug=_unique_slug(name), created_by=created_by)
            if created_by is not None:
                room_join(room=room, user=created_by)
            return room
    except IntegrityError as exc:  # a concurrent create won the race for the name or slug
        raise RoomNameTaken(name) from exc


def room_join(*, room: Room, user: AbstractBaseUser) -> None:
    """Record that ``user`` joined ``room``; joining again changes nothing."""
    # A read first: opening a room is frequent, and only the first visit needs a write.
    if not Membership.objects.filter(room=room, user=user).exists():
        Membership.objects.bulk_create([Membership(room=room, user=user)], ignore_conflicts=True)


def _seq_take(room_id: int, now: datetime) -> int:
    """Advance the room's ``last_seq`` and return it, in one statement.

    The UPDATE takes the room's row lock (the write lock on SQLite) until the transaction ends,
    so concurrent writers get consecutive seqs instead of colliding. ``RETURNING`` (SQLite 3.35+,
    PostgreSQL) saves the separate read; the ORM has no UPDATE ... RETURNING.
    """
    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + 1, last_activity = %s "
            "WHERE id = %s RETURNING last_seq",
            [connection.ops.adapt_datetimefield_value(now), room_id],
        )
        return cursor.fetchone()[0]


def message_create(*, room: Room, author: AbstractBaseUser, body: str) -> Message:
    """Store a message with the room's next seq and broadcast it after commit."""
    now = timezone.now()
    with transaction.atomic():
        seq = _seq_take(room.pk, now)
        message = Message(room=room, author=author, seq=seq, body=body, created=now)
        message.save(force_insert=True)
        events.message_created(message)
        if "@" in body:  # keeps the hot path free of mention work
            mentions_notify(message)
    return message
