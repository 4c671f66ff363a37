"""Notifications and each recipient's copy of one (its read state)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .validators import LINK_MAX_LENGTH, validate_link

TEXT_MAX_LENGTH = 1000


class Notification(models.Model):
    """One notification as sent; who got it is in ``Delivery``."""

    class Level(models.TextChoices):
        INFO = "info"
        SUCCESS = "success"
        WARNING = "warning"
        ERROR = "error"

    class Audience(models.TextChoices):
        EVERYONE = "everyone", "Every active user"
        USERS = "users", "Chosen users"
        ROOM = "room", "A room's members"
        MENTION = "mention", "A mention in a message"

    text = models.TextField(max_length=TEXT_MAX_LENGTH)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    link = models.CharField(
        max_length=LINK_MAX_LENGTH, blank=True, validators=[validate_link], default=""
    )
    created = models.DateTimeField(default=timezone.now, db_index=True)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    audience = models.CharField(max_length=10, choices=Audience.choices)
    room = models.ForeignKey(
        "rooms.Room", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipients = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return self.text if len(self.text) <= 60 else self.text[:59] + "…"


class Delivery(models.Model):
    """One user's copy of a notification: unread until ``read_at`` is set.

    A broadcast writes one narrow row per user (three integers and a null), in batches.
    """

    # Neither foreign key has an index of its own: the two composite indexes below start with
    # them, and a broadcast inserts 100,000 rows, so every index counts.
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notification_deliveries",
        db_index=False,
    )
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "notification"], name="delivery_unique_user_notification"
            ),
        ]
        indexes = [
            # A targeted send pages through its recipients by user id after commit.
            models.Index(fields=["notification", "user"], name="delivery_notification_user"),
            # Counting a user's unread reads only this small index (the bell, every connect).
            models.Index(
                fields=["user"], condition=Q(read_at__isnull=True), name="delivery_user_unread"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.notification_id} → {self.user_id}"
