"""The search tests' two databases: the test SQLite database and a real PostgreSQL.

``search_db`` runs a test once per backend. For PostgreSQL it starts a private server once per
module (tests/support/services.py), migrates it, and makes it Django's default database for
the test's duration, inside a transaction rolled back at the end: the same services, selectors
and ORM run on it as in production.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dj_database_url
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections, transaction
from django.db.utils import load_backend

from .support.services import postgres_server


@contextmanager
def default_database(wrapper) -> Iterator[None]:
    """Make ``wrapper`` Django's default connection until the block ends."""
    saved = connections["default"]
    connections["default"] = wrapper
    try:
        yield
    finally:
        connections["default"] = saved


@pytest.fixture(scope="module")
def postgres_wrapper(django_db_blocker):
    """A migrated private PostgreSQL, as a Django connection (not yet the default)."""
    with postgres_server() as server, django_db_blocker.unblock():
        config = connections.configure_settings({"default": dj_database_url.parse(server.url)})
        # As production's: the hot statements prepared (chatapp.prepared).
        config["default"]["OPTIONS"]["prepare_threshold"] = settings.DB_PREPARE_THRESHOLD
        wrapper = load_backend(config["default"]["ENGINE"]).DatabaseWrapper(
            config["default"], "default"
        )
        with default_database(wrapper):
            call_command("migrate", verbosity=0, interactive=False)
        try:
            yield wrapper
        finally:
            wrapper.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def search_db(request, django_db_blocker) -> Iterator[str]:
    """Run the test on SQLite (FTS5), then on PostgreSQL (tsvector); yields the vendor.

    The test module marks its tests ``django_db``: the SQLite run uses that test database.
    """
    if request.param == "sqlite":
        yield "sqlite"
        return
    wrapper = request.getfixturevalue("postgres_wrapper")
    with django_db_blocker.unblock(), default_database(wrapper), transaction.atomic():
        yield "postgresql"
        transaction.set_rollback(True)
