"""Rooms, their members, and their messages with every change numbered by the room's ``seq``."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


class Room(models.Model):
    """A chat room; ``last_seq`` is the seq of its latest change (docs/protocol.md)."""

    class Kind(models.TextChoices):
        PUBLIC = "public", "Public"
        PRIVATE = "private", "Private"
        DIRECT = "direct", "Direct"

    kind = models.CharField(max_length=7, choices=Kind.choices, default=Kind.PUBLIC)
    # Direct conversations have no name of their own (they show their members' names).
    name = models.CharField(max_length=80, blank=True)
    slug = models.SlugField(max_length=100, unique=True, allow_unicode=True)
    # A direct conversation's sorted member ids ("3-7-9"): the same people, the same room.
    direct_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    last_activity = models.DateTimeField(default=timezone.now, db_index=True)
    last_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-last_activity"]
        constraints = [
            # Public names are unique; a private room may share a name, so creating a room
            # never reveals that a private one of that name exists.
            models.UniqueConstraint(
                fields=["name"], condition=Q(kind="public"), name="room_unique_public_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.slug

    def get_absolute_url(self) -> str:
        return reverse("rooms:detail", kwargs={"slug": self.slug})

    @property
    def is_public(self) -> bool:
        return self.kind == self.Kind.PUBLIC

    @property
    def is_direct(self) -> bool:
        return self.kind == self.Kind.DIRECT


class Message(models.Model):
    """A stored message. ``seq`` is the room seq of its creation, ``changed_seq`` of its latest
    change (creation, edit, deletion or reaction); catch-up reads messages by ``changed_seq``.

    A deleted message stays as a tombstone: its text is erased, ``deleted`` is set.
    """

    # No index of its own: the (room, seq) and (room, changed_seq) indexes start with it, and
    # a lone room index misleads PostgreSQL's planner into scanning a whole room to count the
    # messages after a seq (the unread counts; bench/navigation.py).
    room = models.ForeignKey(
        Room, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveBigIntegerField()
    changed_seq = models.PositiveBigIntegerField(default=0)
    body = models.TextField()
    created = models.DateTimeField(default=timezone.now)
    edited = models.DateTimeField(null=True, blank=True)
    deleted = models.DateTimeField(null=True, blank=True)
    # The sender's idempotency key: a retried send with the same key stores nothing. NULL, not
    # "", for none: the unique constraint below then ignores messages sent without one.
    client_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_unique_room_seq"),
            models.UniqueConstraint(
                fields=["author", "client_id"],
                condition=Q(client_id__isnull=False),
                name="message_unique_author_client_id",
            ),
        ]
        indexes = [models.Index(fields=["room", "changed_seq"], name="message_room_changed")]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq}"

    def save(self, *args, **kwargs) -> None:
        # A message stored outside rooms.services still changed last when it was created.
        if not self.changed_seq:
            self.changed_seq = self.seq
        super().save(*args, **kwargs)


class Reaction(models.Model):
    """One user's emoji on one message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    emoji = models.CharField(max_length=32)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "user", "emoji"], name="reaction_unique_message_user_emoji"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user_id} on {self.message_id}"


class Membership(models.Model):
    """A user in a room: for a public room, one who joined it (created or opened it); for a
    private room or a direct conversation, one who may read it (the access rule)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_memberships"
    )
    joined = models.DateTimeField(default=timezone.now)
    # The room seq up to which this member has read (docs/protocol.md, "Read markers"). Set to
    # the room's seq when the membership starts, so a room never opened before does not count
    # its whole history as unread; it only moves forward (services.read_mark).
    last_read_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="membership_unique_room_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.room_id}"
