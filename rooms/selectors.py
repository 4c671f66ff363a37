"""Reads of rooms and messages, and the access rule every reader goes through.

The rule: a user can read a room when it is public or they are its member. ``rooms_readable``
is that rule as a queryset and ``room_readable_get`` the check by slug; every view, consumer,
service and later feature that touches a room calls one of them (Zulip's
``access_stream_by_id``), so a private room never reaches a non-member by any path.
"""

from collections import defaultdict
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

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
    return rooms_readable(user=user).filter(slug=slug).first()


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
    """The rooms list of ``user``: readable rooms, most recent activity first.

    Direct conversations carry ``title`` (the other members' names), every room ``title``.
    """
    rooms = list(
        rooms_readable(user=user)
        .order_by("-last_activity", "-pk")
        .prefetch_related(
            Prefetch(
                "memberships",
                # Only direct conversations are named after their members (at most 8).
                queryset=Membership.objects.filter(room__kind=Room.Kind.DIRECT)
                .select_related("user")
                .order_by("user__username"),
                to_attr="member_list",
            )
        )
    )
    for room in rooms:
        room.title = room_title(room=room, user=user)
    return rooms


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


def messages_latest(*, room: Room, limit: int) -> list[Message]:
    """The room's latest ``limit`` messages that are not deleted, oldest first."""
    latest = _with_state(Message.objects.filter(room=room, deleted__isnull=True)).order_by("-seq")[
        :limit
    ]
    return list(reversed(latest))


def changes_after(*, room_id: int, after: int, limit: int) -> tuple[list[Message], int, bool]:
    """What changed in a room after seq ``after``: ``(messages, last_seq, more)``.

    The messages whose latest change (``changed_seq``) is above ``after``, in that order, at
    most ``limit``, each in its current state. ``last_seq`` is the seq up to which they cover
    every change: a client that held the room's state at ``after`` and applies them holds its
    state at ``last_seq``. A message changed twice appears once, as it is now.
    """
    # The room's seq first: every change up to it has committed (seqs are taken under the
    # room's row lock and commit in order), so the read below sees at least all of them.
    room_seq = Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first() or 0
    messages = list(
        _with_state(Message.objects.filter(room_id=room_id, changed_seq__gt=after)).order_by(
            "changed_seq"
        )[: limit + 1]
    )
    more = len(messages) > limit
    messages = messages[:limit]
    if more:
        return messages, messages[-1].changed_seq, True
    last = max([room_seq, after, *(m.changed_seq for m in messages)])
    return messages, last, False


def message_in_room(*, room: Room, message_id: Any) -> Message | None:
    """The message ``message_id`` of ``room``, deleted or not; None if there is none."""
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        return None
    if not 0 < message_id < 2**63:  # beyond the database's integers: no such message
        return None
    return Message.objects.filter(room=room, pk=message_id).select_related("author").first()


def room_members_among(
    *, room_ids: list[int], user_ids: list[int], chunk: int = 5000
) -> dict[int, set[int]]:
    """For each room, which of ``user_ids`` are its members (presence: who of those online)."""
    found: dict[int, set[int]] = {room_id: set() for room_id in room_ids}
    if not room_ids or not user_ids:
        return found
    for start in range(0, len(user_ids), chunk):
        pairs = Membership.objects.filter(
            room_id__in=room_ids, user_id__in=user_ids[start : start + chunk]
        ).values_list("room_id", "user_id")
        for room_id, user_id in pairs:
            found[room_id].add(user_id)
    return found
