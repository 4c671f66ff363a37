"""Django's ``cached_db`` session engine with the database load compiled once (see the
package)."""

from django.contrib.sessions.backends import cached_db

from . import PreparedLoad


class SessionStore(PreparedLoad, cached_db.SessionStore):
    pass
