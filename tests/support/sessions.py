"""Spying on where the socket handshakes read their sessions from the database."""

from collections.abc import Callable

from chatapp.sessions import PreparedLoad
from chatapp.sessions import db as db_engine


def session_rows_spy(monkeypatch, record: Callable[[str], None]) -> None:
    """Call ``record(session_key)`` for every session row read from the database: one
    ``SessionStore`` loading its own (``PreparedLoad``), or the ``db`` engine's handshakes
    reading theirs together (``datas_many``)."""
    load = PreparedLoad._get_session_from_db
    many = db_engine.SessionStore.datas_many

    def loaded(store):
        record(store.session_key)
        return load(store)

    def loaded_many(store_class, session_keys):
        for key in session_keys:
            if key:
                record(key)
        return many(session_keys)

    monkeypatch.setattr(PreparedLoad, "_get_session_from_db", loaded)
    monkeypatch.setattr(db_engine.SessionStore, "datas_many", classmethod(loaded_many))
