"""Login and sign-up throttling: the client address, the lockout page, the failed-login log.

The policy (docs/security.md): django-axes counts failed logins in the database, per username
and per client address; LOGIN_FAILURE_LIMIT failures lock that username, or that address, out
for LOGIN_COOLOFF_MINUTES. Sign-ups are counted per address in the cache.
"""

import logging
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

logger = logging.getLogger(__name__)

SIGNUP_WINDOW_SECONDS = 3600


def client_address(request: HttpRequest) -> str:
    """The address of the client that sent ``request``.

    REMOTE_ADDR as the ASGI server gives it: uvicorn replaces the peer address with the
    X-Forwarded-For entry that a trusted proxy (--forwarded-allow-ips, 127.0.0.1 by default)
    appended, and ignores the header from anyone else, so a client cannot choose its address.
    """
    return request.META.get("REMOTE_ADDR") or "unknown"


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' lockout check for logins that come with a request.

    Axes refuses ``authenticate()`` without a request; code that calls it so (the test
    client's ``login``, a script) is not a login form anyone can reach, so it is not throttled.
    """

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


def lockout_message() -> str:
    """What a locked-out user reads."""
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    return (
        "Too many failed log-ins for this account or from your address. "
        f"Log-in is locked for {minutes} minutes; try again later."
    )


def lockout_response(request: HttpRequest, *args: Any) -> HttpResponse:
    """The login page with the lockout message, answered 429 (django-axes' lockout callable)."""
    from django.contrib.auth.forms import AuthenticationForm

    form = AuthenticationForm(request)
    return render(
        request,
        "chatapp/login.html",
        {"form": form, "locked_out": lockout_message()},
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )


@receiver(user_login_failed)
def failed_login_log(sender: Any, credentials: dict, request: HttpRequest | None = None, **kw):
    """Log each failed login with its username and address (Django already masks the password)."""
    address = client_address(request) if request is not None else "-"
    # %r: the username is what the client typed, so quote it (no forged log lines).
    logger.warning("login failed: username=%r address=%s", credentials.get("username"), address)


def signup_allowed(request: HttpRequest) -> bool:
    """Count one sign-up attempt from this address; False past SIGNUP_LIMIT_PER_HOUR.

    A fixed one-hour window per address in the default cache (Redis when REDIS_URL is set, so
    shared by every worker; per process otherwise).
    """
    key = f"signup-attempts:{client_address(request)}"
    cache.add(key, 0, timeout=SIGNUP_WINDOW_SECONDS)
    try:
        attempts = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=SIGNUP_WINDOW_SECONDS)
        attempts = 1
    if attempts > settings.SIGNUP_LIMIT_PER_HOUR:
        logger.warning("sign-up refused: address=%s attempts=%d", client_address(request), attempts)
        return False
    return True
