"""Writes of rooms, members and messages; each write announces itself through ``rooms.events``.

Every change to a room (a new message, an edit, a deletion, a reaction, a member removed) takes
the room's next seq with ``_seq_take`` in the transaction that stores it, and its frame is sent
after commit (``rooms.events``). That is the one path of room changes (docs/protocol.md).
"""

import re
import secrets
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from notifications.services import mentions_notify

from . import events, selectors, store
from .models import Membership, Message, Reaction, Room

DIRECT_MAX_USERS = 8
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class RoomNameTaken(Exception):
    """Another public room already has that name."""


class ChangeRefused(Exception):
    """A change to a room that is not allowed; ``code`` is the protocol's error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class MembershipRefused(Exception):
    """A membership change that is not allowed (the message says why)."""


def _unique_slug(name: str, *, private: bool = False) -> str:
    base = slugify(name, allow_unicode=True)[:80] or "room"
    if private:
        # A private room's slug says nothing a public room's slug could collide with.
        base = f"{base}-{secrets.token_hex(4)}"
    slug, n = base, 1
    while Room.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def room_create(
    *, name: str, created_by: AbstractBaseUser | None = None, private: bool = False
) -> Room:
    """Create a public (or private) room; its creator is its owner and first member."""
    name = name.strip()
    kind = Room.Kind.PRIVATE if private else Room.Kind.PUBLIC
    if kind == Room.Kind.PUBLIC and Room.objects.filter(kind=kind, name__iexact=name).exists():
        raise RoomNameTaken(name)
    try:
        with transaction.atomic():
            slug = _unique_slug(name, private=private)
            room = Room.objects.create(name=name, slug=slug, kind=kind, created_by=created_by)
            if created_by is not None:
                Membership.objects.create(room=room, user=created_by)
            return room
    except IntegrityError as exc:  # a concurrent create won the race for the name or slug
        raise RoomNameTaken(name) from exc


def room_join(*, room: Room, user: AbstractBaseUser) -> None:
    """Record that ``user`` opened a public room; joining again changes nothing.

    Private rooms and direct conversations are joined only by being added.
    """
    if room.kind != Room.Kind.PUBLIC:
        return
    # A read first: opening a room is frequent, and only the first visit needs a write.
    if not Membership.objects.filter(room=room, user=user).exists():
        _membership_start(room, user)


def direct_open(*, users: list[AbstractBaseUser]) -> Room:
    """The direct conversation of exactly these users, created the first time.

    The same set of users always reaches the same room, from whichever member opens it.
    """
    ids = sorted({user.pk for user in users})
    if not ids or len(ids) > DIRECT_MAX_USERS:
        raise MembershipRefused(f"A conversation has 1 to {DIRECT_MAX_USERS} people.")
    key = "-".join(str(i) for i in ids)
    room = Room.objects.filter(direct_key=key).first()
    if room is not None:
        return room
    try:
        with transaction.atomic():
            room = Room.objects.create(
                kind=Room.Kind.DIRECT,
                name="",
                slug=f"dm-{secrets.token_hex(6)}",
                direct_key=key,
                created_by=users[0],
            )
            Membership.objects.bulk_create([Membership(room=room, user_id=i) for i in ids])
            names = {user.pk: user.get_username() for user in users}
            for user_id in ids:
                if user_id != users[0].pk:
                    # What this member calls the room: the others' names (selectors.room_title).
                    title = ", ".join(sorted(n for i, n in names.items() if i != user_id))
                    events.member_added(room, user_id, title)
            return room
    except IntegrityError:  # the other side opened it at the same moment
        return Room.objects.get(direct_key=key)


def member_add(*, room: Room, by: AbstractBaseUser, user: AbstractBaseUser) -> bool:
    """The owner (or staff) adds ``user`` to a private room; True if they were not a member."""
    if not selectors.room_can_manage(user=by, room=room):
        raise MembershipRefused("Only the room's owner can add members.")
    if not user.is_active:
        raise MembershipRefused(f"{user.get_username()} cannot be added.")
    return _membership_start(room, user)


def _membership_start(room: Room, user: AbstractBaseUser) -> bool:
    """Make ``user`` a member, read up to now (the first-visit rule); True if they were not.
    Their sockets hear of it (``room.added``): the rooms list and every sidebar add the room."""
    with transaction.atomic():
        _, created = Membership.objects.get_or_create(
            room=room, user=user, defaults={"last_read_seq": _seq_now(room.pk)}
        )
        if created:
            events.member_added(room, user.pk, room.name)
    return created


def member_remove(*, room: Room, by: AbstractBaseUser, user: AbstractBaseUser) -> bool:
    """The owner (or staff) removes ``user``; their open sockets of the room close (4403)."""
    if not selectors.room_can_manage(user=by, room=room):
        raise MembershipRefused("Only the room's owner can remove members.")
    return _membership_end(room, user)


def member_leave(*, room: Room, user: AbstractBaseUser) -> bool:
    """``user`` leaves a room; direct conversations have fixed members."""
    return _membership_end(room, user)


def _membership_end(room: Room, user: AbstractBaseUser) -> bool:
    if room.kind == Room.Kind.DIRECT:
        raise MembershipRefused("A direct conversation's members are fixed.")
    with transaction.atomic():
        deleted, _ = Membership.objects.filter(room=room, user=user).delete()
        if deleted and room.kind != Room.Kind.PUBLIC:
            # A change of who may read the room: it takes the room's next seq like any other.
            events.member_removed(room, user, _seq_take(room.pk, timezone.now()))
        elif deleted:  # left a public room: only their sidebars change
            events.member_left(room, user.pk)
    return bool(deleted)


def _seq_now(room_id: int) -> int:
    """The room's current seq: where a new member's read marker starts (the first-visit rule,
    docs/protocol.md): what was said before they joined is not unread to them."""
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first() or 0


def read_mark(*, user: AbstractBaseUser, room: Room, seq: int) -> tuple[int, int] | None:
    """Move ``user``'s read marker in ``room`` up to ``seq`` (capped at the room's seq), never
    back; tells the user's sockets. Returns ``(seq, unread)``, or None when nothing moved (an
    older or equal seq, or not a member)."""
    with transaction.atomic():
        seq = min(seq, _seq_now(room.pk))
        # One conditional UPDATE: two tabs marking at once cannot move the marker backwards.
        moved = Membership.objects.filter(room=room, user=user, last_read_seq__lt=seq).update(
            last_read_seq=seq
        )
        if not moved:
            return None
        unread, through = selectors.room_unread(user=user, room_id=room.pk) or (0, seq)
        events.room_read(user.pk, room, seq, unread, through)
    return seq, unread


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


def _member_check(room: Room, user: AbstractBaseUser) -> None:
    """Refuse a change by a non-member of a private room or conversation (call after
    ``_seq_take``: under the room's lock, a removal that committed first is seen)."""
    if room.kind == Room.Kind.PUBLIC:
        return
    if not Membership.objects.filter(room=room, user=user).exists():
        raise ChangeRefused("forbidden", "You are not a member of this room.")


def client_id_valid(client_id: object) -> bool:
    """Whether ``client_id`` is a valid idempotency key: 1-64 of ``[A-Za-z0-9_-]``."""
    return isinstance(client_id, str) and CLIENT_ID_RE.fullmatch(client_id) is not None


def message_create(
    *,
    room: Room,
    author: AbstractBaseUser,
    body: str,
    client_id: str | None = None,
    reply_to: Message | None = None,
) -> Message:
    """Store a message (see ``message_post``); returns it, or the original of a retry."""
    return message_post(
        room=room, author=author, body=body, client_id=client_id, reply_to=reply_to
    )[0]


def message_post(
    *,
    room: Room,
    author: AbstractBaseUser,
    body: str,
    client_id: str | None = None,
    reply_to: Message | None = None,
) -> tuple[Message, bool]:
    """Store a message with the room's next seq and broadcast it after commit.

    Returns ``(message, created)``. A ``client_id`` the author already used returns the
    message stored under it, with ``created`` False: nothing is stored or sent again. The
    database's unique constraint decides, so two sockets on two workers cannot both store it.
    """
    if client_id is not None and not client_id_valid(client_id):
        raise ChangeRefused("invalid_client_id", "client_id must be 1-64 of A-Z a-z 0-9 _ -.")
    if reply_to is not None and reply_to.room_id != room.pk:
        raise ChangeRefused("not_found", "No such message in this room.")
    now = timezone.now()
    message = Message(
        room=room, author=author, body=body, created=now, client_id=client_id, reply_to=reply_to
    )
    try:
        if store.one_trip_possible(room, body):
            store.message_insert(message, now)  # commits by itself: the event goes at once
            events.message_created(message)
            return message, True
        with transaction.atomic():
            message.seq = _seq_take(room.pk, now)
            _member_check(room, author)
            message.save(force_insert=True)
            events.message_created(message)
            if "@" in body:  # keeps the hot path free of mention work
                mentions_notify(message)
    except IntegrityError:
        # The whole transaction rolled back, its seq with it: the room's seq stays gapless.
        existing = _message_by_client_id(author, client_id)
        if existing is None:
            raise
        if existing.room_id != room.pk:
            raise ChangeRefused(
                "invalid_client_id", "This client_id was used for a message in another room."
            ) from None
        return existing, False
    return message, True


def _message_by_client_id(author: AbstractBaseUser, client_id: str | None) -> Message | None:
    if client_id is None:
        return None
    return (
        Message.objects.filter(author=author, client_id=client_id)
        .select_related("room", "author", "reply_to__author")
        .first()
    )


class _Unchanged(Exception):
    """Raised inside a change's transaction when it would change nothing: the seq it took is
    rolled back with it, so the room's seq stays gapless."""


def _change_begin(message: Message, user: AbstractBaseUser | None) -> Message:
    """Take the room's next seq for a change of ``message`` and return the message as stored
    now, with ``changed_seq`` set to that seq (call inside the change's transaction).

    The seq comes first: its UPDATE holds the room's row lock until commit, so every change of
    the room's messages is serialised on one lock, taken in one order (no deadlock with a
    reply's foreign-key check), and the message read after it is current.
    """
    seq = _seq_take(message.room_id, timezone.now())
    current = Message.objects.select_related("room", "author", "reply_to__author").get(
        pk=message.pk
    )
    if user is not None:
        _member_check(current.room, user)
    if current.deleted is not None:
        raise ChangeRefused("not_found", "No such message in this room.")
    current.changed_seq = seq
    return current


def message_edit(*, message: Message, user: AbstractBaseUser, body: str) -> Message:
    """The author replaces a message's text; every client gets ``message.edited``."""
    try:
        with transaction.atomic():
            changed = _change_begin(message, user)
            if changed.author_id != user.pk:
                raise ChangeRefused("forbidden", "You can only edit your own messages.")
            if changed.body == body:
                raise _Unchanged
            changed.body = body
            changed.edited = timezone.now()
            changed.save(update_fields=["body", "edited", "changed_seq"])
            events.message_edited(changed)
    except _Unchanged:
        return message
    return changed


def message_can_delete(*, message: Message, user: AbstractBaseUser) -> bool:
    """The author, the owner of a (non-direct) room and staff may delete a message."""
    if message.author_id == user.pk or user.is_staff:
        return True
    return message.room.created_by_id == user.pk and message.room.kind != Room.Kind.DIRECT


def message_delete(*, message: Message, user: AbstractBaseUser) -> Message:
    """Erase a message's text and reactions, keeping a tombstone that catch-up reports."""
    with transaction.atomic():
        # Staff moderate from the admin, members or not.
        changed = _change_begin(message, None if user.is_staff else user)
        if not message_can_delete(message=changed, user=user):
            raise ChangeRefused("forbidden", "You can only delete your own messages.")
        changed.body = ""
        changed.deleted = timezone.now()
        changed.save(update_fields=["body", "deleted", "changed_seq"])
        Reaction.objects.filter(message=changed).delete()
        events.message_deleted(changed)
    return changed


def emoji_valid(value: object) -> bool:
    """Whether ``value`` is exactly one emoji (skin tones and ZWJ sequences included)."""
    # Imported on the first reaction, not at start-up: importing its table is 11-20 ms of a
    # worker's start, all of it in the window in which a restart serves no one (bench S5,
    # docs/performance.md).
    import emoji as emoji_lib

    return isinstance(value, str) and 0 < len(value) <= 32 and emoji_lib.is_emoji(value)


def reaction_set(
    *, message: Message, user: AbstractBaseUser, emoji: str, on: bool
) -> dict[str, list[str]] | None:
    """Add (``on``) or remove ``user``'s ``emoji`` on a message.

    Returns the message's reactions after the change, or None when nothing changed (no seq,
    no frame).
    """
    if not emoji_valid(emoji):
        raise ChangeRefused("invalid_emoji", '"emoji" must be one emoji.')
    try:
        with transaction.atomic():
            changed = _change_begin(message, user)
            existing = Reaction.objects.filter(message=changed, user=user, emoji=emoji)
            if on == existing.exists():
                raise _Unchanged
            if on:
                Reaction.objects.create(message=changed, user=user, emoji=emoji)
            else:
                existing.delete()
            changed.save(update_fields=["changed_seq"])
            reactions = selectors.reactions_state(changed)
            events.reactions_changed(changed, reactions)
    except _Unchanged:
        return None
    return reactions
