"""Django's database session engines, with the session load compiled once per process.

Every socket connect loads its session twice (the handshake, then the check after joining the
user's group, realtime.sessions) and Django builds the same ``Session.objects.get(...)``
queryset each time: with the rest of the connect compiled once (chatapp.prepared), that build
was the largest part of the connect's database thread (bench P1, docs/performance.md). The
engines below are Django's own (``db``, ``cached_db``) with only that read replaced; expiry is
compared in Python, as the query compared it.

    SESSION_ENGINE = "chatapp.sessions.db"          # the embedded default
    SESSION_ENGINE = "chatapp.sessions.cached_db"   # with REDIS_URL (SESSION_CACHE)

A reconnect storm's handshakes read their sessions together (``datas_many``, the ``db`` engine:
one query for all the keys of a moment, realtime.sessions).
"""

from collections.abc import Iterable
from typing import Any

from django.contrib.sessions.models import Session
from django.utils import timezone

from chatapp.prepared import Prepared

_by_key = Prepared(lambda session_key: Session.objects.filter(session_key=session_key)[:1])


class PreparedLoad:
    """Replaces ``django.contrib.sessions.backends.db.SessionStore._get_session_from_db``."""

    session_key: str | None
    _session_key: str | None

    def _get_session_from_db(self) -> Any:
        if not self.session_key:
            self._session_key = None
            return None
        found = next(iter(_by_key.models(session_key=self.session_key)), None)
        if found is None or found.expire_date <= timezone.now():
            self._session_key = None  # as Django's: no such (or an expired) session
            return None
        return found


def datas_many(store_class: Any, session_keys: Iterable[str | None]) -> list[dict[str, Any]]:
    """What ``store_class(key).load()`` gives for each key (``{}``: no key, no such session,
    expired, corrupted), the sessions read in one query; for engines that keep sessions in the
    database only (``chatapp.sessions.db``)."""
    keys = list(session_keys)
    decoder = store_class()
    wanted = {key for key in keys if key and decoder._validate_session_key(key)}
    found: dict[str, str] = {}
    if wanted:
        now = timezone.now()
        rows = store_class.get_model_class()._default_manager.filter(session_key__in=wanted)
        for key, data, expires in rows.values_list("session_key", "session_data", "expire_date"):
            if expires > now:
                found[key] = data
    return [decoder.decode(found[key]) if key in found else {} for key in keys]
