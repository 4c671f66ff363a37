"""Django's ``db`` session engine with the load compiled once (see the package)."""

from django.contrib.sessions.backends import db

from . import PreparedLoad


class SessionStore(PreparedLoad, db.SessionStore):
    pass
