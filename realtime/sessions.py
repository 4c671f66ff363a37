"""A socket lives only as long as the session it was opened with, as Django's requests do.

Django checks a request's session on every request: it must exist, name the user, carry the
user's current ``get_session_auth_hash()`` (which changes with the password) and the backend
must still accept the user (``is_active``). A socket is checked once, at the handshake, and then
stays open for hours, so it is told when to check again: logging out, saving a user's password
or ``is_active`` and deleting a user send a ``session.check`` event to that user's group, and
every socket of the user, on every worker and node, re-checks its own session and closes with
4401 if Django would no longer accept it.

Inside a request the event waits for the response: ``PasswordChangeView`` saves the user
before ``update_session_auth_hash`` gives the current session the new hash (under a new key),
so a check in between would close the very session Django keeps. The middleware sends it once
the session is saved, with the session's old and new key, so sockets of a session whose key was
cycled follow it.
"""

import contextvars
import hashlib
import logging
import threading
from collections.abc import Callable
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
    user_logged_out,
)
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare

from chatapp.prepared import Prepared
from ops.checks import in_memory_layer_used

from .events import event_broadcast, user_group

logger = logging.getLogger(__name__)

SESSION_CHECK = "session.check"
# A user save that touches none of these cannot end a session (e.g. login's ``last_login``).
AUTH_FIELDS = frozenset({"password", "is_active"})

# Users whose sockets re-check once the current request's response is ready (None outside
# a request). A set object, so a copied context (a thread of sync_to_async) adds to it too.
_pending: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar(
    "realtime_sessions_pending", default=None
)


def key_digest(session_key: str) -> str:
    """What the check event says about an old session key (never the key itself)."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def session_user(session_key: str | None) -> Any:
    """The user Django would log in with this session (``auth.get_user``'s rule), or None.

    The one rule for sockets: the handshake resolves its user with it, and the re-checks
    after joining and on every ``session.check`` event ask it again (``session_valid``).
    Unlike ``get_user`` it changes nothing: a mismatched session is not flushed here, the next
    request does that.
    """
    return sessions_users([session_key])[0]


def sessions_users(session_keys: list[str | None]) -> list[Any]:
    """``session_user`` of each key (the handshakes of one moment, realtime.auth). An engine
    whose ``SessionStore`` has ``datas_many`` (``chatapp.sessions.db``, the embedded default)
    reads the sessions in one query: one each was an eighth of a reconnect storm's CPU (S5,
    docs/performance.md); others load each session as Django does."""
    engine = import_module(settings.SESSION_ENGINE)
    many = getattr(engine.SessionStore, "datas_many", None)
    if many is not None:
        return session_data_users([_auth_data(data) for data in many(session_keys)])
    return session_data_users(
        [_auth_data(engine.SessionStore(key)) if key else {} for key in session_keys]
    )


_AUTH_KEYS = (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY)


def _auth_data(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data.get(k) for k in _AUTH_KEYS}


def session_data_user(data: dict[str, Any]) -> Any:
    """``session_user``'s rule on a session's data already read (a missing session: ``{}``):
    the handshake reads it from the session cache on the event loop when it can
    (realtime.session_cache). Loads the user, so it runs on the database thread."""
    return session_data_users([data])[0]


def session_data_users(datas: list[dict[str, Any]]) -> list[Any]:
    """``session_data_user`` of each session's data; the users of Django's ``ModelBackend``
    are loaded together, one query per ``USERS_READ_MAX`` (a reconnect storm's handshakes,
    bench S5)."""
    claims = [_claims(data) for data in datas]
    ids = {claim[0] for claim in claims if claim is not None and _model_lookup(*claim[:2])}
    found = _users_by_pks(sorted(ids)) if len(ids) > 1 else None
    return [None if claim is None else _accepted(*claim, found) for claim in claims]


# The users of the handshakes queued together, by pk: ``filter(pk__in=...)`` built and
# compiled by the ORM for every batch held a worker's GIL 7 % of the time in a reconnect
# storm (S5, docs/performance.md). Compiled once per process for each length of list
# (chatapp.prepared), a batch padded to the next power of two with its last pk repeated: a
# process compiles at most eight, and a longer batch is read in several.
USERS_READ_MAX = 128
_users_by_pks_read = Prepared(
    lambda **pks: get_user_model()._default_manager.filter(pk__in=list(pks.values()))
)


def _users_by_pks(pks: list[int]) -> dict[int, Any]:
    """The users with these pks (those that exist): one query per ``USERS_READ_MAX``."""
    found: dict[int, Any] = {}
    for start in range(0, len(pks), USERS_READ_MAX):
        chunk = pks[start : start + USERS_READ_MAX]
        padded = chunk + chunk[-1:] * ((1 << (len(chunk) - 1).bit_length()) - len(chunk))
        values = {f"p{k}": pk for k, pk in enumerate(padded)}
        found.update((user.pk, user) for user in _users_by_pks_read.models(**values))
    return found


def _claims(data: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    """``(user id, backend, session hash)`` the session claims, or None if it names nobody (no
    such session: logged out, expired; not logged in; a backend no longer configured)."""
    user_id, backend_path = data.get(SESSION_KEY), data.get(BACKEND_SESSION_KEY)
    if user_id is None or backend_path is None:
        return None
    try:
        user_id = get_user_model()._meta.pk.to_python(user_id)
    except ValidationError:
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    return user_id, load_backend(backend_path), data.get(HASH_SESSION_KEY)


def _accepted(user_id: Any, backend: Any, session_hash: Any, found: dict | None) -> Any:
    """The claimed user if the backend still accepts them and the hash is still theirs."""
    user = _user_get(backend, user_id, found)  # None when inactive or deleted
    if user is None or not session_hash:
        return None
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return user
    if any(
        constant_time_compare(session_hash, fallback)
        for fallback in user.get_session_auth_fallback_hash()
    ):
        return user
    return None


def session_valid(session_key: str | None, user_id: int) -> bool:
    """Whether Django would still log ``user_id`` in with this session."""
    return sessions_valid([(session_key, user_id)])[0]


def sessions_valid(asks: list[tuple[str | None, int]]) -> list[bool]:
    """``session_valid`` of each ``(session key, user id)``, the users loaded together
    (``sessions_users``): the re-checks of the sockets connecting or due at one moment."""
    users = sessions_users([session_key for session_key, _ in asks])
    return [
        user is not None and user.pk == user_id
        for user, (_, user_id) in zip(users, asks, strict=True)
    ]


# Every socket connect loads its user (the handshake, and the re-check after joining when a
# check may have passed it by): ModelBackend's ``get(pk=...)``, compiled once per process
# (chatapp.prepared).
_user_by_pk = Prepared(lambda pk: get_user_model()._default_manager.filter(pk=pk)[:1])


def _model_lookup(user_id: Any, backend: Any) -> bool:
    """Whether the backend's ``get_user`` is Django's own ``ModelBackend`` lookup by pk."""
    return type(backend).get_user is ModelBackend.get_user and isinstance(user_id, int)


def _user_get(backend: Any, user_id: Any, found: dict[int, Any] | None = None) -> Any:
    """``backend.get_user(user_id)``; Django's own ``ModelBackend`` lookup runs compiled, or
    takes the user from ``found`` (the users of several sessions, loaded together)."""
    if not _model_lookup(user_id, backend):
        return backend.get_user(user_id)
    if found is not None:
        user = found.get(user_id)
    else:
        user = next(iter(_user_by_pk.models(pk=user_id)), None)
    return user if user is not None and backend.user_can_authenticate(user) else None


# The session checks this process has sent, counted (``checks_mark``, in-memory layer).
_checks_sent = 0
_checks_lock = threading.Lock()
# The count of every process's checks on a shared layer (realtime.layers.RedisChannelLayer).
CHECKS_COUNTER = "session-checks"


def _shared_counter() -> Any:
    """The default layer if it keeps counters that every process shares, else None."""
    layer = get_channel_layer()
    return layer if hasattr(layer, "counter_incr") else None


async def checks_mark() -> Any:
    """A mark of the session checks sent so far, for a socket to tell later whether one may
    have passed it by (``HubConsumer.session_checks_missed``); None when that cannot be told.

    A socket learns its user from its session at the handshake and joins the user's group after
    it: a check sent in between never reaches it. So it compares this mark, taken before the
    handshake read the session, with the mark once it has joined, and reads the session again
    only if they differ. Every check moves the mark before it is sent, after what it reports
    (a deleted session, a changed user) is saved. With the in-memory layer the mark is this
    process's count (it is the only server, ops.guard, and sends every check its sockets can
    be sent); with the project's Redis layer it is a counter in Redis that every process moves
    (``check_broadcast``); with any other layer there is none and the socket always reads
    again. Saves a reconnect a session read and a user query (bench S5, docs/performance.md).
    """
    if in_memory_layer_used():
        return _checks_sent
    counter = _shared_counter()
    if counter is None:
        return None
    try:
        return await counter.counter_get(CHECKS_COUNTER)
    except Exception:  # Redis unreachable: no mark, so the socket reads again
        logger.warning("reading the session-check counter failed", exc_info=True)
        return None


def _checks_count() -> None:
    counter = _shared_counter()
    if counter is None:
        global _checks_sent
        with _checks_lock:
            _checks_sent += 1
        return
    try:  # a request's thread or a script: never the event loop's own thread (the ORM's)
        async_to_sync(counter.counter_incr)(CHECKS_COUNTER)
    except Exception:
        # The check is still sent to the sockets already joined; one joining right now may
        # miss it, as it may miss the check itself while Redis fails.
        logger.exception("counting a session check failed")


def check_broadcast(user_id: int, renamed: tuple[str, str] | None = None) -> None:
    """Have every socket of the user re-check its session (after the transaction commits)."""
    _checks_count()  # before it is sent: a socket that joins later sees the mark move
    payload: dict[str, Any] = {"type": SESSION_CHECK}
    if renamed is not None:
        payload["renamed"] = [key_digest(renamed[0]), renamed[1]]
    event_broadcast(user_group(user_id), payload)


def check_request(user_id: int) -> None:
    """Check the user's sockets at the end of the current request, or now outside one."""
    pending = _pending.get()
    if pending is None:
        check_broadcast(user_id)
    else:
        pending.add(user_id)


class SocketSessionMiddleware:
    """Sends the checks that a request asked for once its session is saved.

    Listed before ``SessionMiddleware``, so its code after the response runs after the
    session middleware saved the session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        pending: set[int] = set()
        token = _pending.set(pending)
        old_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        try:
            response = self.get_response(request)
        finally:
            _pending.reset(token)
        session = getattr(request, "session", None)
        new_key = session.session_key if session is not None else None
        user = getattr(request, "user", None) if old_key and new_key != old_key else None
        user_id = user.pk if user is not None and user.is_authenticated else None
        if new_key and user_id is not None:
            # The session went on under a new key (update_session_auth_hash, login again):
            # the user's sockets of the old key follow it, then check.
            pending.discard(user_id)
            check_broadcast(user_id, (old_key, new_key))
        for pending_id in pending:
            check_broadcast(pending_id)
        return response


def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None and user.pk is not None:
        check_request(user.pk)


def _user_saved(sender: Any, instance: Any, created: bool, update_fields: Any, **kwargs: Any):
    if created or (update_fields is not None and not AUTH_FIELDS & set(update_fields)):
        return
    user_id = instance.pk
    transaction.on_commit(lambda: check_request(user_id))


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: check_request(user_id))


def signals_connect() -> None:
    """Send checks on logout and on user changes that can end sessions (AppConfig.ready)."""
    user_model = get_user_model()
    user_logged_out.connect(_logged_out, dispatch_uid="realtime.sessions.logged_out")
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="realtime.sessions.saved")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="realtime.sessions.deleted")
