"""Search over the messages a user may read (``rooms.selectors.rooms_readable``)."""

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from django.utils.safestring import SafeString

from rooms.models import Membership, Message, Room
from rooms.selectors import room_readable_get, room_title, rooms_readable

from . import backends
from .query import ParsedQuery, QueryRefused, query_parse
from .snippet import snippet_html

PAGE_SIZE = 20
# Deep pages cost an OFFSET over every better match; nobody reads result 1,000.
PAGES_MAX = 50
# Ranking looks at the newest matches only, as many as the pages can show (search.backends).
RANK_WINDOW = PAGE_SIZE * PAGES_MAX


@dataclass
class SearchHit:
    """One result: the message, what its reader calls its room, its excerpt, its link."""

    message: Message
    room_title: str
    snippet: SafeString
    url: str


@dataclass
class SearchResults:
    """A page of results, or ``notice`` saying why there are none to look for."""

    query: str
    page: int = 1
    hits: list[SearchHit] = field(default_factory=list)
    has_next: bool = False
    notice: str = ""
    room: Room | None = None
    room_title: str = ""
    ignored: tuple[str, ...] = ()

    @property
    def first_number(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1


def message_url(message: Message) -> str:
    """The message in its room's context (``?around=<seq>``)."""
    return f"{reverse('rooms:detail', kwargs={'slug': message.room.slug})}?around={message.seq}"


def _hits(
    parsed: ParsedQuery, ids: list[int], rooms: QuerySet[Room], user: AbstractBaseUser
) -> list[SearchHit]:
    # The rule again, and "not deleted": a change between the ranking query and this one
    # (a removal from the room, a deletion) must not show.
    messages = Message.objects.filter(pk__in=ids, room__in=rooms, deleted__isnull=True)
    messages = messages.select_related("author", "room")
    messages = messages.prefetch_related(
        Prefetch(
            "room__memberships",
            # Only direct conversations are named after their members (room_title).
            queryset=Membership.objects.filter(room__kind=Room.Kind.DIRECT)
            .select_related("user")
            .order_by("user__username"),
            to_attr="member_list",
        )
    )
    by_id = {message.pk: message for message in messages}
    excerpts = backends.snippets(parsed, ids)
    hits = []
    for pk in ids:
        message = by_id.get(pk)
        if message is None:
            continue
        hits.append(
            SearchHit(
                message=message,
                room_title=room_title(room=message.room, user=user),
                snippet=snippet_html(excerpts.get(pk) or message.body),
                url=message_url(message),
            )
        )
    return hits


def message_search(
    *, user: AbstractBaseUser, text: str, room_slug: str = "", page: int = 1
) -> SearchResults:
    """Page ``page`` of the messages matching ``text`` in the rooms ``user`` may read (or in
    the one room ``room_slug``), best first, newest first among equals.

    An unknown room and one the user may not read give the same "no such room" answer.
    """
    results = SearchResults(query=text, page=page)
    rooms = rooms_readable(user=user)
    if room_slug:
        results.room = room_readable_get(user=user, slug=room_slug)
        if results.room is None:
            results.notice = "No such room."
            return results
        results.room_title = room_title(room=results.room, user=user)
        rooms = Room.objects.filter(pk=results.room.pk)
    try:
        parsed = query_parse(text)
    except QueryRefused as refused:
        results.notice = str(refused)
        return results
    results.ignored = parsed.ignored
    if not 1 <= page <= PAGES_MAX:
        results.notice = f"Results stop at page {PAGES_MAX}: make the search more specific."
        return results
    rooms_sql, rooms_params = rooms.values("pk").query.sql_with_params()
    ids = backends.ranked_ids(
        parsed,
        rooms_sql,
        rooms_params,
        window=RANK_WINDOW,
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )
    results.has_next = len(ids) > PAGE_SIZE
    results.hits = _hits(parsed, ids[:PAGE_SIZE], rooms, user)
    return results
