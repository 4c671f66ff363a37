"""Room pages: the list with its forms, a room with its history, its members, and direct
conversations. Every page finds its room through ``selectors.room_readable_get`` (the access
rule): a room the user may not read is a 404, exactly like an unknown one."""

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from . import selectors, services
from .forms import DirectForm, MemberAddForm, RoomForm
from .models import Room


def _list_page(request: HttpRequest, form: RoomForm, direct_form: DirectForm) -> HttpResponse:
    context = {
        "rooms": selectors.room_list(user=request.user),
        "form": form,
        "direct_form": direct_form,
    }
    return render(request, "room/list.html", context)


@login_required
def room_list(request: HttpRequest) -> HttpResponse:
    """List the rooms this user can read; a POST of the form creates one and opens it."""
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            room = services.room_create(
                name=form.cleaned_data["name"],
                created_by=request.user,
                private=form.cleaned_data["private"],
            )
        except services.RoomNameTaken:
            form.add_error("name", "A room with this name already exists.")
        else:
            return redirect(room)
    return _list_page(request, form, DirectForm(user=request.user))


def _room_or_404(request: HttpRequest, slug: str) -> Room:
    room = selectors.room_readable_get(user=request.user, slug=slug)
    if room is None:
        raise Http404("No such room.")
    return room


def _around(request: HttpRequest) -> int | None:
    try:
        around = int(request.GET.get("around", ""))
    except ValueError:
        return None
    return around if 0 < around < 2**63 else None


@login_required
def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """A room: its latest messages (or those around ``?around=<seq>``, or around the first
    unread one), then the live chat; older and newer pages load over the socket."""
    room = _room_or_404(request, slug)
    services.room_join(room=room, user=request.user)
    # The room (and its seq) was read before the messages: a change after that seq is sent
    # again by the socket's catch-up (?after=), and the page applies it by id; none is missed.
    window = selectors.message_window(
        room=room, user=request.user, around=_around(request), limit=settings.CHAT_HISTORY_PAGE
    )
    chat_messages = window.messages
    for message in chat_messages:
        message.reaction_state = selectors.reactions_state(message)
    title = selectors.room_title(room=room, user=request.user)
    config = {
        "slug": room.slug,
        "username": request.user.get_username(),
        "isOwner": room.created_by_id == request.user.pk and not room.is_direct,
        "isStaff": bool(request.user.is_staff),
        "lastSeq": room.last_seq,
        "maxLength": settings.CHAT_MESSAGE_MAX_LENGTH,
        "lastReadSeq": window.last_read_seq,
        "around": window.around,
        "hasOlder": window.has_older,
        "hasNewer": window.has_newer,
        "pageSize": settings.CHAT_HISTORY_PAGE,
        # Presence: whose status a direct conversation shows, and when typing is off.
        "directOthers": [
            u.get_username() for u in selectors.room_members(room=room) if u.pk != request.user.pk
        ]
        if room.is_direct
        else [],
        "typingMaxOnline": settings.CHAT_TYPING_MAX_ONLINE,
    }
    return render(
        request,
        "room/detail.html",
        # Not "messages": that is the flash messages' name in every template.
        {"room": room, "title": title, "chat_messages": chat_messages, "chat_config": config},
    )


@login_required
def room_members(request: HttpRequest, slug: str) -> HttpResponse:
    """A room's members; the owner (or staff) adds and removes them, any member leaves."""
    room = selectors.room_readable_get(user=request.user, slug=slug)
    can_manage = room is not None and selectors.room_can_manage(user=request.user, room=room)
    if room is None and request.user.is_staff:
        room = get_object_or_404(Room, slug=slug, kind=Room.Kind.PRIVATE)
        can_manage = True
    if room is None:
        raise Http404("No such room.")
    add_form = MemberAddForm(request.POST if "username" in request.POST else None)
    if request.method == "POST":
        try:
            done = _members_post(request, room, add_form)
        except services.MembershipRefused as refused:
            flash.error(request, str(refused))
            done = "stay"
        if done == "left":
            return redirect("rooms:list")
        if done != "invalid":
            return redirect("rooms:members", slug=room.slug)
    context = {
        "room": room,
        "title": selectors.room_title(room=room, user=request.user),
        "members": selectors.room_members(room=room),
        "can_manage": can_manage,
        "add_form": add_form,
    }
    return render(request, "room/members.html", context)


def _members_post(request: HttpRequest, room: Room, add_form: MemberAddForm) -> str:
    if "leave" in request.POST:
        services.member_leave(room=room, user=request.user)
        flash.success(request, f"You left {room.name}.")
        return "left"
    if "remove" in request.POST:
        user = get_object_or_404(get_user_model(), username=request.POST["remove"])
        services.member_remove(room=room, by=request.user, user=user)
        return "removed"
    if "username" in request.POST:
        if not add_form.is_valid():
            return "invalid"
        services.member_add(room=room, by=request.user, user=add_form.cleaned_data["username"])
        return "added"
    return "stay"


@login_required
def direct_open(request: HttpRequest, username: str) -> HttpResponse:
    """``/dm/<username>/``: the 1:1 conversation with that user, created the first time."""
    other = get_object_or_404(get_user_model(), username=username, is_active=True)
    room = services.direct_open(users=[request.user, other])
    return redirect(room)


@login_required
@require_POST
def direct_start(request: HttpRequest) -> HttpResponse:
    """The form that starts a group conversation (field ``usernames``)."""
    form = DirectForm(request.POST, user=request.user)
    if not form.is_valid():
        return _list_page(request, RoomForm(), form)
    room = services.direct_open(users=[request.user, *form.cleaned_data["usernames"]])
    return redirect(room)
