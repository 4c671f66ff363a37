"""Rooms and their messages."""

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone


class Room(models.Model):
    """A chat room; ``last_seq`` is the seq of its latest message."""

    name = models.CharField(max_length=80, unique=True)
    slug = models.SlugField(max_length=100, unique=True, allow_unicode=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    last_activity = models.DateTimeField(default=timezone.now, db_index=True)
    last_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-last_activity"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("rooms:detail", kwargs={"slug": self.slug})


class Message(models.Model):
    """A stored chat message; ``seq`` numbers a room's messages 1, 2, 3, ... without gaps."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveBigIntegerField()
    body = models.TextField()
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_unique_room_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq}"


class Membership(models.Model):
    """A user who joined a room: created it or opened it."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_memberships"
    )
    joined = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="membership_unique_room_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.room_id}"
