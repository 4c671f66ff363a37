"""Cache-Control for pages that show a logged-in user's private content."""

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import sync_and_async_middleware


@sync_and_async_middleware
def private_pages_not_stored(get_response: Callable) -> Callable:
    """Every response to a logged-in user gets ``Cache-Control: no-store`` (and ``private``).

    Rooms, members, notifications, the rooms list, search: nearly every page a logged-in user
    sees shows private content, so the rule is by user rather than a list of views that a new
    page could miss. No browser or shared cache keeps them, and the back button on a shared
    computer after a logout cannot show them again. Static files never get here (WhiteNoise
    answers them first) and stay cacheable.
    """
    if iscoroutinefunction(get_response):

        async def middleware_async(request: HttpRequest) -> HttpResponse:
            response = await get_response(request)
            user = await request.auser()
            if user.is_authenticated:
                add_never_cache_headers(response)
            return response

        return middleware_async

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if request.user.is_authenticated:
            add_never_cache_headers(response)
        return response

    return middleware
