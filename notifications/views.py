"""The notifications page, marking read, and the unread count for scripts."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from . import selectors, services

PAGE_SIZE = 50


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("notifications:list")


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    """A user's notifications, newest first, 50 a page."""
    page = Paginator(selectors.deliveries_of(user=request.user), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "notifications/list.html",
        {"page": page, "unread": selectors.unread_count(user=request.user)},
    )


@require_POST
@login_required
def mark_read(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark one notification read (every open tab of the user hears of it)."""
    services.notifications_mark_read(user=request.user, ids=[pk])
    return _back(request)


@require_POST
@login_required
def mark_all_read(request: HttpRequest) -> HttpResponse:
    """Mark every notification of the user read."""
    services.notifications_mark_read(user=request.user)
    return _back(request)


@never_cache
@login_required
def unread(request: HttpRequest) -> JsonResponse:
    """``{"unread": n}``: the bell's count, for a page whose socket just reconnected."""
    return JsonResponse({"unread": selectors.unread_count(user=request.user)})
