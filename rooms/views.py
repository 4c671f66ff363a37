"""Room pages: the list with its create form, and a room with its history."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from . import selectors, services
from .forms import RoomForm
from .models import Room


@login_required
def room_list(request: HttpRequest) -> HttpResponse:
    """List rooms; a POST of the form creates one and opens it."""
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            room = services.room_create(name=form.cleaned_data["name"], created_by=request.user)
        except services.RoomNameTaken:
            form.add_error("name", "A room with this name already exists.")
        else:
            return redirect(room)
    return render(request, "room/list.html", {"rooms": selectors.room_list(), "form": form})


@login_required
def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """A room: its latest messages, then the live chat."""
    room = get_object_or_404(Room, slug=slug)
    services.room_join(room=room, user=request.user)
    messages = selectors.messages_latest(room=room, limit=settings.CHAT_HISTORY_PAGE)
    config = {
        "slug": room.slug,
        "username": request.user.get_username(),
        "lastSeq": messages[-1].seq if messages else 0,
        "maxLength": settings.CHAT_MESSAGE_MAX_LENGTH,
    }
    return render(
        request, "room/detail.html", {"room": room, "messages": messages, "chat_config": config}
    )
