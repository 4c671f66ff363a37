"""Reads of rooms and messages, and the access rule every reader goes through.

The rule: a user can read a room when it is public or they are its member. ``rooms_readable``
is that rule as a queryset and ``room_readable_get`` the check by slug; every view, consumer,
service and later feature that touches a room calls one of them (Zulip's
``access_stream_by_id``), so a private room never reaches a non-member by any path.
"""

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from chatapp.prepared import Prepared, Read, reads_run

from .models import Membership, Message, Reaction, Room


def rooms_readable(*, user: AbstractBaseUser) -> QuerySet[Room]:
    """The rooms ``user`` may read: every public room and the rooms they are a member of."""
    if not user.is_authenticated:
        return Room.objects.none()
    member = Membership.objects.filter(room=OuterRef("pk"), user_id=user.pk)
    return Room.objects.filter(Q(kind=Room.Kind.PUBLIC) | Q(Exists(member)))


def room_readable_get(*, user: AbstractBaseUser, slug: str) -> Room | None:
    """The room ``slug`` if ``user`` may read it; None for an unknown room and for a room they
    may not read alike, so a caller cannot tell the two apart."""
    if not user.is_authenticated:
        return None
    # Every socket connect asks: the queryset is compiled once per process (chatapp.prepared).
    return next(iter(_readable_by_slug.models(user=user, slug=slug)), None)


def rooms_readable_on_connect(asks: list[tuple[AbstractBaseUser, str]]) -> list[Room | None]:
    """``room_readable_get`` of each ``(user, slug)`` for a socket's connect, which needs only
    the room's identity; the connects queued together ask together (``reads_batched``).

    A public room, once found, is kept per process by slug: readable by every logged-in user,
    it needs no query to decide, and its identity (``pk``, ``slug``, ``kind``) never changes,
    so a reconnect storm costs no room query per socket and the sockets of a room share one
    instance. Its other fields may be stale: the connect reads nothing else from it, and
    checks in its next database call that the room is still there under that slug
    (``room_present``, which forgets it if not), so a room deleted meanwhile on any worker
    costs that socket one retry. The rooms not kept are read together (``reads_run``: on
    PostgreSQL one round trip and one run of the statement for all): after a restart every
    worker looks up each room of its sockets once, at the start of the storm (S5,
    docs/performance.md). None for an unknown room, one the user may not read, and an
    anonymous user.
    """
    answers = [room_kept(user=user, slug=slug) for user, slug in asks]
    reading = [
        i for i, (user, _) in enumerate(asks) if answers[i] is None and user.is_authenticated
    ]
    found = reads_run(*(_readable_read(*asks[i]) for i in reading))
    for i, room in zip(reading, found, strict=True):
        answers[i] = room
    return answers


def _readable_read(user: AbstractBaseUser, slug: str) -> Read:
    values = {"user": user, "slug": slug}
    return Read(
        _readable_by_slug,
        values,
        lambda rows: _room_keep(next(iter(_readable_by_slug.made(rows, **values)), None)),
    )


def _room_keep(room: Room | None) -> Room | None:
    """Keep ``room`` if it is public (``rooms_readable_on_connect``)."""
    if room is not None and room.is_public:
        if len(_public_rooms) >= PUBLIC_ROOMS_KEPT:
            _public_rooms.clear()  # bounded; the busy ones come back at their next connect
        _public_rooms[room.slug] = room
    return room


def room_kept(*, user: AbstractBaseUser, slug: str) -> Room | None:
    """The public room ``slug`` if this process keeps it (``rooms_readable_on_connect``), else
    None. No query: a connect asks on the event loop first and goes to the database thread
    only for a room not kept."""
    return _public_rooms.get(slug) if user.is_authenticated else None


def room_present(*, room: Room) -> tuple[int, Any] | None:
    """The room's version ``(last_seq, created)`` if ``room`` is still there under its slug
    (``rooms_readable_on_connect`` keeps rooms that another worker may have deleted since);
    None, and forgotten, if not. The version serves a catch-up read next (``rooms.catchup``)."""
    return room_present_read(room=room).run()


def room_present_read(*, room: Room) -> Read:
    """``room_present`` as a read to run with others (``chatapp.prepared.reads_run``)."""

    def finish(rows: list[tuple[Any, ...]]) -> tuple[int, Any] | None:
        version = next(iter(rows), None)
        if version is None:
            rooms_forget(slug=room.slug)
        return version  # type: ignore[return-value]

    return Read(_room_present, {"room_id": room.pk, "slug": room.slug}, finish)


def rooms_forget(*, slug: str | None = None) -> None:
    """Forget a kept public room (or all of them)."""
    if slug is None:
        _public_rooms.clear()
    else:
        _public_rooms.pop(slug, None)


PUBLIC_ROOMS_KEPT = 10_000
_public_rooms: dict[str, Room] = {}
_room_present = Prepared(
    lambda room_id, slug: Room.objects.filter(pk=room_id, slug=slug).values_list(
        "last_seq", "created"
    )
)


_readable_by_slug = Prepared(
    lambda user, slug: rooms_readable(user=user).filter(slug=slug).order_by("pk")[:1],
    users=("user",),
)


def room_can_read(*, user: AbstractBaseUser, room: Room) -> bool:
    """Whether ``user`` may read ``room`` (the same rule as ``rooms_readable``)."""
    if not user.is_authenticated:
        return False
    if room.kind == Room.Kind.PUBLIC:
        return True
    return Membership.objects.filter(room=room, user_id=user.pk).exists()


def room_can_manage(*, user: AbstractBaseUser, room: Room) -> bool:
    """Whether ``user`` may add and remove members: the owner of a private room, or staff."""
    if room.kind != Room.Kind.PRIVATE:
        return False
    return bool(user.is_staff) or room.created_by_id == user.pk


def room_list(*, user: AbstractBaseUser) -> list[Room]:
    """The rooms list of ``user`` (the "browse rooms" page): readable rooms, most recent
    activity first, each with ``title`` (a direct conversation's: the other members' names)
    and ``joined`` (whether it is in their sidebar).
    """
    joined = Membership.objects.filter(room=OuterRef("pk"), user_id=user.pk)
    rooms = list(
        rooms_readable(user=user)
        .annotate(joined=Exists(joined))
        .order_by("-last_activity", "-pk")
        .prefetch_related(_direct_members())
    )
    for room in rooms:
        room.title = room_title(room=room, user=user)
    return rooms


def _direct_members() -> Prefetch:
    # Only direct conversations are named after their members (at most 8).
    return Prefetch(
        "memberships",
        queryset=Membership.objects.filter(room__kind=Room.Kind.DIRECT)
        .select_related("user")
        .order_by("user__username"),
        to_attr="member_list",
    )


def room_title(*, room: Room, user: AbstractBaseUser) -> str:
    """What ``user`` calls ``room``: its name, or for a direct conversation the other names."""
    if room.kind != Room.Kind.DIRECT:
        return room.name
    members = getattr(room, "member_list", None)
    if members is None:
        members = list(
            Membership.objects.filter(room=room).select_related("user").order_by("user__username")
        )
    names = [m.user.get_username() for m in members if m.user_id != user.pk]
    return ", ".join(names) or user.get_username()


def room_members(*, room: Room) -> list[AbstractBaseUser]:
    """The room's members, by name."""
    return [
        m.user
        for m in Membership.objects.filter(room=room)
        .select_related("user")
        .order_by("user__username")
    ]


def _with_state(messages: QuerySet[Message]) -> QuerySet[Message]:
    """Messages with what their frames need: author, room, parent, reactions by whom."""
    return messages.select_related("author", "room", "reply_to__author").prefetch_related(
        Prefetch(
            "reactions",
            queryset=Reaction.objects.select_related("user").order_by("pk"),
            to_attr="reaction_list",
        )
    )


def reactions_state(message: Message) -> dict[str, list[str]]:
    """A message's reactions as ``{emoji: [username, ...]}``, in the order they were added."""
    reactions = getattr(message, "reaction_list", None)
    if reactions is None:
        reactions = list(
            Reaction.objects.filter(message=message).select_related("user").order_by("pk")
        )
    state: dict[str, list[str]] = defaultdict(list)
    for reaction in reactions:
        state[reaction.emoji].append(reaction.user.get_username())
    return dict(state)


def changes_after(
    *, room_id: int, after: int, limit: int, room_seq: int | None = None
) -> tuple[list[Message], int, bool]:
    """What changed in a room after seq ``after``: ``(messages, last_seq, more)``.

    The messages whose latest change (``changed_seq``) is above ``after``, in that order, at
    most ``limit``, each in its current state. ``last_seq`` is the seq up to which they cover
    every change: a client that held the room's state at ``after`` and applies them holds its
    state at ``last_seq``. A message changed twice appears once, as it is now.
    ``room_seq``: the room's seq, if the caller has just read it (``room_version``).
    """
    # The room's seq first: every change up to it has committed (seqs are taken under the
    # room's row lock and commit in order), so the read below sees at least all of them.
    if room_seq is None:
        room_seq = room_version(room_id=room_id)[0]
    if room_seq <= after:
        # Nothing changed since (no change has a seq above the room's): the common reconnect,
        # and after a restart thousands of them at once (S5), so spare the query below.
        return [], room_seq, False
    if room_seq - after <= limit:
        # Each change takes a seq of its own and is the latest of one message only, so at
        # most ``room_seq - after`` messages changed: no cut by ``limit``.
        messages = _changed_between(room_id, after, room_seq)
        return messages, max([room_seq, *(m.changed_seq for m in messages)]), False
    messages = list(
        _with_state(Message.objects.filter(room_id=room_id, changed_seq__gt=after)).order_by(
            "changed_seq"
        )[: limit + 1]
    )
    more = len(messages) > limit
    messages = messages[:limit]
    if more:
        return messages, messages[-1].changed_seq, True
    # Not ``after`` itself: a client that claims a seq the room never reached would otherwise
    # be told it is current up to there, and its socket would drop every live frame below it.
    last = max([room_seq, *(m.changed_seq for m in messages)])
    return messages, last, False


def _changed_between(room_id: int, after: int, upto: int) -> list[Message]:
    """``_with_state``'s messages changed in seqs ``(after, upto]``, by ``changed_seq``, read
    as two prepared statements in one round trip and put together here.

    The queryset with its joins and prefetch took ~3.3 ms of a worker's CPU per catch-up that
    missed ``rooms.catchup``'s cache, most of it Django building and compiling the two queries
    and their model trees: 12 % of a worker's CPU in a production reconnect storm (S5,
    docs/performance.md). The reactions are read after the messages, as the prefetch reads
    them, for every message changed after ``after`` with no upper bound (a message may change
    again in between); those of messages not among the rows are not used.
    """
    values = {"room_id": room_id, "after": after, "upto": upto}
    rows, reactions = reads_run(
        Read(_changes, values, lambda rows: _changes.converted(rows, **values)),
        Read(_changes_reactions, {"room_id": room_id, "after": after}, list),
    )
    by_message: dict[int, list[Reaction]] = defaultdict(list)
    for message_id, emoji, user_id, username in reactions:
        by_message[message_id].append(Reaction(emoji=emoji, user=_user(user_id, username)))
    room = None
    messages = []
    for row in rows:
        c = dict(zip(_CHANGES_NAMES, row, strict=True))
        if room is None:
            room = Room(pk=room_id, slug=c["slug"])
        message = Message(
            pk=c["pk"],
            room=room,
            author=_user(c["author_id"], c["author"]),
            **{name: c[name] for name in _CHANGES_OWN},
        )
        if c["reply_to_id"] is not None:
            message.reply_to = Message(
                pk=c["reply_to_id"],
                room=room,
                author=_user(c["parent_author_id"], c["parent_author"]),
                seq=c["parent_seq"],
                body=c["parent_body"],
                deleted=c["parent_deleted"],
            )
        message.reaction_list = by_message.get(c["pk"], [])
        messages.append(message)
    return messages


def _user(pk: int, username: str) -> Any:
    user = Message.author.field.related_model(pk=pk)
    setattr(user, user.USERNAME_FIELD, username)
    return user


def _author(prefix: str) -> tuple[str, str]:
    """The columns of an author: id and username (``get_username``)."""
    return f"{prefix}_id", f"{prefix}__{Message.author.field.related_model.USERNAME_FIELD}"


# The columns of ``_changes``, by name.
_CHANGES_OWN = ("seq", "changed_seq", "body", "created", "edited", "deleted", "client_id")
_CHANGES_NAMES = (
    "pk",
    "slug",
    "author_id",
    "author",
    *_CHANGES_OWN,
    "reply_to_id",
    "parent_seq",
    "parent_author_id",
    "parent_author",
    "parent_body",
    "parent_deleted",
)
_changes = Prepared(
    lambda room_id, after, upto: (
        Message.objects.filter(room_id=room_id, changed_seq__gt=after, changed_seq__lte=upto)
        .order_by("changed_seq")
        .values_list(
            "pk",
            "room__slug",
            *_author("author"),
            *_CHANGES_OWN,
            "reply_to_id",
            "reply_to__seq",
            *_author("reply_to__author"),
            "reply_to__body",
            "reply_to__deleted",
        )
    )
)
_changes_reactions = Prepared(
    lambda room_id, after: (
        Reaction.objects.filter(message__room_id=room_id, message__changed_seq__gt=after)
        .order_by("pk")
        .values_list("message_id", "emoji", *_author("user"))
    )
)


def room_version(*, room_id: int) -> tuple[int, Any]:
    """``(last_seq, created)`` of a room; ``(0, None)`` if there is none."""
    return next(iter(_room_version.rows(room_id=room_id)), (0, None))


# Every reconnect asks (``?after=``): compiled once per process (chatapp.prepared).
_room_version = Prepared(
    lambda room_id: Room.objects.filter(pk=room_id).values_list("last_seq", "created")
)


def message_in_room(*, room: Room, message_id: Any) -> Message | None:
    """The message ``message_id`` of ``room``, deleted or not; None if there is none."""
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        return None
    if not 0 < message_id < 2**63:  # beyond the database's integers: no such message
        return None
    return Message.objects.filter(room=room, pk=message_id).select_related("author").first()


def _unread_count(user_id: int, after: Any) -> Subquery:
    """The number of messages of the outer room after seq ``after`` (an expression over the
    outer query) by others than ``user_id`` that are not deleted: the unread count's rule."""
    counted = (
        Message.objects.filter(room=OuterRef("pk"), seq__gt=after, deleted__isnull=True)
        .exclude(author_id=user_id)
        .order_by()
        .values("room")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted), 0)


def conversations(*, user: AbstractBaseUser) -> list[Room]:
    """The sidebar of ``user``: the rooms they are a member of (public rooms joined, private
    rooms, direct conversations), latest activity first, each with ``title``, ``unread`` and
    ``last_read_seq``. Two queries whatever the number of rooms: the rooms with their unread
    counts (a correlated count per room, which reads only the unread rows through the
    ``(room, seq)`` index), and the members of the direct conversations for their titles."""
    rooms = list(_member_rooms(user).prefetch_related(_direct_members()))
    for room in rooms:
        room.title = room_title(room=room, user=user)
    return rooms


def _member_rooms(user: AbstractBaseUser) -> QuerySet[Room]:
    """The rooms ``user`` is a member of, through the access rule, latest activity first, with
    their ``last_read_seq`` and ``unread`` count."""
    # One join on the user's membership (filter, then annotate, reuse it): the count's bound is
    # then a plain column, which PostgreSQL uses in the (room, seq) index scan.
    return (
        rooms_readable(user=user)
        .filter(memberships__user_id=user.pk)
        .annotate(last_read_seq=F("memberships__last_read_seq"))
        .annotate(unread=_unread_count(user.pk, OuterRef("last_read_seq")))
        .order_by("-last_activity", "-pk")
    )


def conversations_unread(
    *, user: AbstractBaseUser, slug: str | None = None
) -> list[tuple[int, str, int, int]]:
    """``(id, slug, unread, through)`` of each of ``user``'s rooms (or of room ``slug`` only)
    in one query: the sidebar's counts for a socket, each current to the room seq ``through``
    (read in the same statement, so the two agree)."""
    if slug is None:
        return conversations_unread_read(user=user).run()
    rooms = _member_rooms(user).filter(slug=slug)
    return list(rooms.values_list("pk", "slug", "unread", "last_seq"))


def conversations_unread_read(*, user: AbstractBaseUser) -> Read:
    """``conversations_unread`` of all the user's rooms as a read to run with others
    (``chatapp.prepared.reads_run``)."""
    # Every room socket's connect asks: compiled once per process (chatapp.prepared).
    return Read(_conversations_unread, {"user": user}, list)


_conversations_unread = Prepared(
    lambda user: _member_rooms(user).values_list("pk", "slug", "unread", "last_seq"),
    users=("user",),
)


def conversations_ids(*, user: AbstractBaseUser) -> list[tuple[int, str]]:
    """``(id, slug)`` of each of ``user``'s rooms: the rooms of ``conversations_unread`` without
    counting (a socket subscribes to them before it loads the counts)."""
    return list(
        rooms_readable(user=user).filter(memberships__user_id=user.pk).values_list("pk", "slug")
    )


def room_unread(*, user: AbstractBaseUser, room_id: int) -> tuple[int, int] | None:
    """``(unread, through)`` of one of ``user``'s rooms, as ``conversations_unread``; None if
    they are not a member."""
    return _member_rooms(user).filter(pk=room_id).values_list("unread", "last_seq").first()


def _page(messages: QuerySet[Message], limit: int) -> tuple[list[Message], bool]:
    found = list(_with_state(messages)[: limit + 1])
    return found[:limit], len(found) > limit


def messages_before(*, room: Room, before: int, limit: int) -> tuple[list[Message], bool]:
    """Scroll-back: the room's last ``limit`` messages with a seq below ``before`` that are not
    deleted, oldest first, in their current state, and whether older ones remain. Paging with
    the oldest seq returned as the next ``before`` gives every message exactly once."""
    newest_first = Message.objects.filter(room=room, seq__lt=before, deleted__isnull=True)
    found, more = _page(newest_first.order_by("-seq"), limit)
    return found[::-1], more


def messages_after(*, room: Room, after: int, limit: int) -> tuple[list[Message], bool]:
    """The forward page of a room opened around a message: the first ``limit`` messages with a
    seq above ``after`` that are not deleted, oldest first, and whether newer ones remain."""
    forward = Message.objects.filter(room=room, seq__gt=after, deleted__isnull=True)
    return _page(forward.order_by("seq"), limit)


@dataclass
class MessageWindow:
    """What a room page opens on: ``messages`` oldest first, whether older and newer ones
    exist beyond them, the seq it is centred on (if any) and the reader's marker."""

    messages: list[Message]
    has_older: bool
    has_newer: bool
    around: int | None
    last_read_seq: int


def first_unread_seq(*, room: Room, user: AbstractBaseUser, after: int) -> int | None:
    """The seq of the first message by others after ``after`` that is not deleted."""
    return (
        Message.objects.filter(room=room, seq__gt=after, deleted__isnull=True)
        .exclude(author_id=user.pk)
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )


def message_window(
    *, room: Room, user: AbstractBaseUser, around: int | None, limit: int
) -> MessageWindow:
    """The messages a room page opens on (``room`` was read through the access rule): the
    latest ``limit``; or those around seq ``around``; or, when the user's first unread message
    is older than the latest page, those around it, so the "new messages" divider can show."""
    last_read = (
        Membership.objects.filter(room=room, user_id=user.pk)
        .values_list("last_read_seq", flat=True)
        .first()
    )
    last_read = room.last_seq if last_read is None else last_read
    if around is None:
        latest, has_older = messages_before(room=room, before=room.last_seq + 1, limit=limit)
        first_unread = first_unread_seq(room=room, user=user, after=last_read)
        if first_unread is None or not latest or first_unread >= latest[0].seq:
            return MessageWindow(latest, has_older, False, None, last_read)
        around = first_unread
        centred = None
    else:
        centred = around
    older, has_older = messages_before(room=room, before=around, limit=limit // 2)
    newer, has_newer = messages_after(room=room, after=around - 1, limit=limit - len(older))
    return MessageWindow(older + newer, has_older, has_newer, centred, last_read)


def room_members_among(
    *, room_ids: list[int], user_ids: list[int], chunk: int = 5000
) -> dict[int, set[int]]:
    """For each room, which of ``user_ids`` are its members (presence: who of those online)."""
    found: dict[int, set[int]] = {room_id: set() for room_id in room_ids}
    if not room_ids or not user_ids:
        return found
    for start in range(0, len(user_ids), chunk):
        # The rooms' members, each kept if online: ``user_id + 0`` keeps the user list off the
        # (room, user) index. With both lists on it, SQLite without statistics probed every
        # (room, user) pair: 500 rooms x 5,000 users took 200 ms a tick against 2.4 ms
        # (S5, docs/performance.md).
        pairs = (
            Membership.objects.alias(member=F("user_id") + 0)
            .filter(
                room_id__in=_id_list(room_ids), member__in=_id_list(user_ids[start : start + chunk])
            )
            .values_list("room_id", "user_id")
        )
        for room_id, user_id in pairs:
            found[room_id].add(user_id)
    return found


def _id_list(ids: list[int]) -> Any:
    """A list of ids as one query parameter (a JSON array on SQLite, an array on PostgreSQL).

    ``__in`` with a Python list prepares and binds each value: with thousands of users online
    that was most of the presence tick's CPU (bench P1/S5, docs/performance.md).
    """
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", (list(ids),))
    return RawSQL("SELECT value FROM json_each(%s)", (json.dumps(list(ids)),))
