"""Reads of notifications."""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Max, Q, QuerySet

from chatapp.prepared import Prepared, Read

from .models import Delivery


def unread_snapshot(*, user_id: int) -> tuple[int, int]:
    """A user's unread count and the highest notification id that count takes into account."""
    return unread_snapshot_read(user_id=user_id).run()


def unread_snapshot_read(*, user_id: int) -> Read:
    """``unread_snapshot`` as a read to run with others (``chatapp.prepared.reads_run``)."""
    # One statement, so the count and the id it is current to agree; compiled once per process
    # (chatapp.prepared): every socket connect asks.
    return Read(_unread_snapshot, {"user_id": user_id}, _snapshot)


def _snapshot(rows: list[tuple[Any, ...]]) -> tuple[int, int]:
    row = next(iter(rows), None)
    return (row[0], row[1] or 0) if row is not None else (0, 0)


_unread_snapshot = Prepared(
    lambda user_id: (
        Delivery.objects.filter(user_id=user_id)
        .values("user_id")
        .annotate(
            unread=Count("pk", filter=Q(read_at__isnull=True)), through=Max("notification_id")
        )
        .values_list("unread", "through")
    )
)


def unread_count(*, user: AbstractBaseUser) -> int:
    """How many of ``user``'s notifications are unread."""
    return Delivery.objects.filter(user=user, read_at__isnull=True).count()


def deliveries_of(*, user: AbstractBaseUser) -> QuerySet[Delivery]:
    """A user's notifications, newest first."""
    return (
        Delivery.objects.filter(user=user)
        .select_related("notification")
        .order_by("-notification_id")
    )


def active_user_ids(*, usernames: list[str]) -> tuple[list[int], list[str]]:
    """Ids of the active users with these names, and the names that match no active user."""
    found = dict(
        get_user_model()
        .objects.filter(username__in=usernames, is_active=True)
        .values_list("username", "pk")
    )
    return list(found.values()), [name for name in usernames if name not in found]
