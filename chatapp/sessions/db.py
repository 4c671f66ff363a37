"""Django's ``db`` session engine with the load compiled once (see the package)."""

from typing import Any

from django.contrib.sessions.backends import db

from . import PreparedLoad, datas_many


class SessionStore(PreparedLoad, db.SessionStore):
    @classmethod
    def datas_many(cls, session_keys: list[str | None]) -> list[dict[str, Any]]:
        """The data of each session, read in one query (realtime.sessions.sessions_users)."""
        return datas_many(cls, session_keys)
