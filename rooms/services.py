"""Writes of rooms and messages; each write announces itself through ``rooms.events``."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
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


def message_create(*, room: Room, author: AbstractBaseUser, body: str) -> Message:
    """Store a message with the room's next seq and broadcast it after commit."""
    now = timezone.now()
    with transaction.atomic():
        # The UPDATE takes the room's row lock (the write lock on SQLite) before seq is read,
        # so concurrent writers get consecutive seqs instead of colliding.
        Room.objects.filter(pk=room.pk).update(last_seq=F("last_seq") + 1, last_activity=now)
        seq = Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)
        message = Message.objects.create(room=room, author=author, seq=seq, body=body, created=now)
        events.message_created(message)
        if "@" in body:  # keeps the hot path free of mention work
            mentions_notify(message)
    return message
