"""The search page: parse the request, call the selector, render."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .selectors import message_search


def _page_number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 1


@login_required
def search(request: HttpRequest) -> HttpResponse:
    """``/search/?q=...&room=<slug>&page=<n>``: messages the user may read, best first."""
    text = request.GET.get("q", "")
    room_slug = request.GET.get("room", "")
    results = None
    if text.strip():
        results = message_search(
            user=request.user,
            text=text,
            room_slug=room_slug,
            page=_page_number(request.GET.get("page", "1")),
        )
    context = {"results": results, "q": text, "room_slug": room_slug}
    return render(request, "search/search.html", context)
