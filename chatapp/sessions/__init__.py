"""Django's database session engines, with the session load compiled once per process.

Every socket connect loads its session twice (the handshake, then the check after joining the
user's group, realtime.sessions) and Django builds the same ``Session.objects.get(...)``
queryset each time: with the rest of the connect compiled once (chatapp.prepared), that build
was the largest part of the connect's database thread (bench P1, docs/performance.md). The
engines below are Django's own (``db``, ``cached_db``) with only that read replaced; expiry is
compared in Python, as the query compared it.

    SESSION_ENGINE = "chatapp.sessions.db"          # the embedded default
    SESSION_ENGINE = "chatapp.sessions.cached_db"   # with REDIS_URL (SESSION_CACHE)
"""

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
