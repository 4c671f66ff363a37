"""Sending notifications and marking them read; every write announces itself after commit.

``notify`` is the one way a notification is sent: the management command, the admin, the
standalone script and chat mentions all call it.
"""

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet
from django.utils import timezone

from rooms.formatting import body_text
from rooms.models import Membership, Message, Room

from . import events, selectors
from .models import TEXT_MAX_LENGTH, Delivery, Notification
from .validators import validate_link

logger = logging.getLogger(__name__)

# Users per INSERT batch: big enough that the statement overhead vanishes, small enough that
# a batch of rows (and of user ids) stays a few hundred kilobytes whatever the audience.
BATCH_SIZE = 2000

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class NotifyResult:
    """What ``notify`` did: the stored notification (None on a dry run) and its reach."""

    notification: Notification | None
    recipients: int


def notification_clean(*, text: str, level: str, link: str) -> tuple[str, str, str]:
    """Validate what a notification says; returns the cleaned values or raises ValidationError."""
    text = (text or "").strip()
    if not text:
        raise ValidationError("A notification needs some text.", code="empty")
    if len(text) > TEXT_MAX_LENGTH:
        raise ValidationError(f"A notification is at most {TEXT_MAX_LENGTH} characters.")
    if level not in Notification.Level.values:
        raise ValidationError(
            f"Unknown level {level!r}: use one of {', '.join(Notification.Level.values)}."
        )
    link = (link or "").strip()
    validate_link(link)
    return text, level, link


def audience_users(
    *, users: Iterable[AbstractBaseUser | int] | None = None, room: Room | None = None
) -> QuerySet:
    """Active users of an audience: chosen ``users``, a ``room``'s members, or everyone.

    A public room's members are the users who have posted in it or joined it (opened or
    created it); a private room's or a direct conversation's are its members, and only they.
    """
    active = get_user_model().objects.filter(is_active=True)
    if users is not None:
        ids = {user if isinstance(user, int) else user.pk for user in users}
        return active.filter(pk__in=ids)
    if room is not None and room.kind != Room.Kind.PUBLIC:
        return active.filter(Exists(Membership.objects.filter(room=room, user=OuterRef("pk"))))
    if room is not None:
        posted = Message.objects.filter(room=room, author=OuterRef("pk"))
        joined = Membership.objects.filter(room=room, user=OuterRef("pk"))
        return active.filter(Q(Exists(posted)) | Q(Exists(joined)) | Q(pk=room.created_by_id))
    return active


def _deliveries_insert(notification_id: int, users: QuerySet, size: int) -> Iterator[int]:
    """Insert a delivery row for every user of ``users``, ``size`` users per statement.

    Each batch is one ``INSERT ... SELECT`` over a window of user ids (keyset paging), so the
    ids stream inside the database and never become Python objects: building 100,000 model
    instances for ``bulk_create`` cost several times more than the inserts themselves.
    Yields the number of rows each batch inserted.
    """
    ordered = users.order_by("pk").values_list("pk", flat=True)
    quote = connection.ops.quote_name
    table = quote(Delivery._meta.db_table)
    last = 0
    while True:
        # The batch's last id: the index seeks there without reading the rows in between.
        window_end = ordered.filter(pk__gt=last)[size - 1 : size].first()
        window = users.filter(pk__gt=last)
        if window_end is not None:
            window = window.filter(pk__lte=window_end)
        sql, params = window.order_by().values_list("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({quote('notification_id')}, {quote('user_id')}) "
                f"SELECT {int(notification_id)}, audience.* FROM ({sql}) audience",
                params,
            )
            inserted = cursor.rowcount
        if inserted:
            yield inserted
        if window_end is None:
            return
        last = window_end


def _recipient_ids(notification_id: int, size: int) -> Iterator[int]:
    """The recipients of a stored notification, paged from the database after commit."""
    last = 0
    while True:
        ids = list(
            Delivery.objects.filter(notification_id=notification_id, user_id__gt=last)
            .order_by("user_id")
            .values_list("user_id", flat=True)[:size]
        )
        if not ids:
            return
        yield from ids
        last = ids[-1]


def notify(
    *,
    text: str,
    level: str = Notification.Level.INFO,
    link: str = "",
    sender: AbstractBaseUser | None = None,
    users: Iterable[AbstractBaseUser | int] | None = None,
    room: Room | None = None,
    kind: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    batch_size: int | None = None,
) -> NotifyResult:
    """Store a notification for an audience, then announce it live after commit.

    The audience is ``users``, or ``room``'s members, or (neither given) every active user.
    Their copies are inserted ``batch_size`` users per statement, the ids paged inside the
    database, so memory stays flat however many users there are. Everyone is told with a
    single group send; chosen users and rooms with one send per recipient's group.
    ``progress(done, total)`` is called after each batch. ``kind`` overrides the audience
    recorded on the notification (mentions use it).
    """
    if users is not None and room is not None:
        raise ValueError("Give users or room, not both.")
    batch_size = batch_size or BATCH_SIZE
    text, level, link = notification_clean(text=text, level=level, link=link)
    everyone = users is None and room is None
    recipients = audience_users(users=users, room=room)
    user_max = 0
    if everyone:
        # Users who sign up while this runs are not in the audience, and their sockets must
        # not count a notification they never got; every recipient has a pk up to user_max.
        user_max = get_user_model().objects.aggregate(m=Max("pk"))["m"] or 0
        recipients = recipients.filter(pk__lte=user_max)
    total = recipients.count()
    if dry_run:
        return NotifyResult(None, total)
    if kind is None:
        kind = (
            Notification.Audience.EVERYONE
            if everyone
            else Notification.Audience.ROOM
            if room is not None
            else Notification.Audience.USERS
        )
    with transaction.atomic():
        # One transaction: a notification reaches its whole audience or nobody, and the live
        # announcement (on commit) never names a row that was rolled back.
        notification = Notification.objects.create(
            text=text,
            level=level,
            link=link,
            sender=sender if sender is not None and sender.pk else None,
            audience=kind,
            room=room,
            created=timezone.now(),
        )
        done = 0
        for inserted in _deliveries_insert(notification.pk, recipients, batch_size):
            done += inserted
            if progress is not None:
                progress(done, max(total, done))
        notification.recipients = done
        Notification.objects.filter(pk=notification.pk).update(recipients=done)
        if everyone:
            events.notification_broadcast(notification, user_max=user_max)
        elif done:
            events.notification_send(notification, _recipient_ids(notification.pk, batch_size))
    logger.info("notification %s stored for %d users", notification.pk, done)
    return NotifyResult(notification, done)


def notifications_mark_read(*, user: AbstractBaseUser, ids: Iterable[int] | None = None) -> int:
    """Mark some (``ids``) or all of a user's notifications read; every tab is told after commit.

    Returns how many changed.
    """
    id_list = sorted({int(i) for i in ids}) if ids is not None else None
    with transaction.atomic():
        unread = Delivery.objects.filter(user=user, read_at__isnull=True)
        if id_list is not None:
            unread = unread.filter(notification_id__in=id_list)
        changed = unread.update(read_at=timezone.now())
        if changed:
            count, through = selectors.unread_snapshot(user_id=user.pk)
            events.notification_read(user.pk, ids=id_list, unread=count, through=through)
    return changed


# @name at a word start; Django usernames are letters, digits and @ . + - _ (150 at most).
MENTION_RE = re.compile(r"(?<![\w@])@([\w.@+-]{1,150})")
MENTIONS_PER_MESSAGE = 20
EXCERPT_LENGTH = 140


def mentioned_usernames(body: str) -> set[str]:
    """The usernames a message body mentions (with and without trailing punctuation)."""
    names: set[str] = set()
    for match in MENTION_RE.finditer(body):
        name = match.group(1)
        names.add(name)
        names.add(name.rstrip(".-+@"))
        if len(names) >= 2 * MENTIONS_PER_MESSAGE:
            break
    names.discard("")
    return names


def mentions_notify(message: Message) -> NotifyResult | None:
    """Notify the users that ``message`` mentions as @username, linking to the message.

    Call it inside the transaction that stores the message: the notification then commits
    (and is announced) with the message, or not at all.
    """
    names = mentioned_usernames(message.body)
    if not names:
        return None
    room = message.room
    candidates = get_user_model().objects.filter(username__in=names, is_active=True)
    if room.kind != Room.Kind.PUBLIC:
        # Only those who can read the room: a mention must not reveal it to anyone else.
        candidates = candidates.filter(
            Exists(Membership.objects.filter(room=room, user=OuterRef("pk")))
        )
    mentioned = list(
        candidates.exclude(pk=message.author_id).values_list("pk", flat=True)[:MENTIONS_PER_MESSAGE]
    )
    if not mentioned:
        return None
    # What the room shows of the message, as text: "**done**" reads "done" here too.
    body = body_text(message.body)
    if len(body) > EXCERPT_LENGTH:
        body = body[: EXCERPT_LENGTH - 1] + "…"
    return notify(
        text=f"{message.author.get_username()} mentioned you in {room.name or 'a conversation'}: "
        f"{body}",
        link=f"{room.get_absolute_url()}?around={message.seq}",
        sender=message.author,
        users=mentioned,
        kind=Notification.Audience.MENTION,
    )
