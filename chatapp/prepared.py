"""Reads built with the ORM once per process, then run as their SQL with new values.

Building a queryset (``filter``, ``annotate``, ``Exists``, ``Subquery``) and compiling it to SQL
costs Python far more than SQLite or PostgreSQL take to run it: for the sidebar's rooms with
their unread counts, ~1.2 ms of Django against ~0.1 ms of database on this machine, on every
socket connect (bench P1 and S5, docs/performance.md). The reads a socket makes on every connect
are therefore written once as querysets, as every other read is (the access rule stays in
``rooms.selectors``), compiled once with marker values, and run again as that SQL with the
markers' places filled in.

A read is only reused when every marker came out as a query parameter of its own and nowhere
in the SQL text; otherwise it is built each time, as before (``Prepared.reusable``).
"""

import itertools
from collections.abc import Callable
from typing import Any

from django.db import connections, router
from django.db.models import Model, QuerySet

_serial = itertools.count(1)


def _marker(kind: type) -> Any:
    """A value that stands out among a query's parameters: a large integer (inside a 32-bit
    field's range, which Django checks), or a string of control bytes."""
    n = next(_serial)
    return 2**31 - 1 - 7919 * n if kind is int else f"\x1fprepared\x1f{n}\x1f"


class Marked:
    """Stands in for a user while a read is built: only ``pk`` and ``is_authenticated``."""

    is_authenticated = True

    def __init__(self, pk: int) -> None:
        self.pk = pk


Compiled = tuple[QuerySet[Any], str, list[Any]]


class Prepared:
    """``build(**arguments)`` → a queryset; calling ``rows`` or ``models`` runs its SQL.

    Each argument is an integer (an id, a seq), a string (a slug), or a user named in
    ``users`` (built with a ``Marked`` stand-in, run with the user's ``pk``). ``rows()`` is
    for a ``values_list`` queryset of plain integers and strings, ``models()`` for one that
    yields instances of its model.
    """

    def __init__(self, build: Callable[..., QuerySet[Any]], *, users: tuple[str, ...] = ()) -> None:
        self.build = build
        self.users = users
        self._compiled: dict[tuple[str, str, tuple[str, ...]], Compiled | None] = {}

    def _queryset(self, values: dict[str, Any]) -> QuerySet[Any]:
        return self.build(**{k: Marked(v) if k in self.users else v for k, v in values.items()})

    def _compile(self, values: dict[str, Any], alias: str) -> Compiled | None:
        markers = {k: _marker(int if k in self.users else type(v)) for k, v in values.items()}
        queryset = self._queryset(markers).using(alias)
        sql, params = queryset.query.get_compiler(using=alias).as_sql()
        places: list[Any] = []
        for param in params:
            name = next((k for k, m in markers.items() if param == m), None)
            places.append(name if name is not None else (param,))
        if {p for p in places if isinstance(p, str)} != set(markers) or any(
            str(m) in sql for m in markers.values()
        ):
            return None  # a marker was inlined or lost: not safe to reuse, build every time
        return queryset, sql, places

    def _prepared(self, values: dict[str, Any]) -> tuple[str, str, list[Any], Any] | None:
        """``(alias, sql, params, model)`` for these values; None if the read is not reusable."""
        alias = router.db_for_read(None) or "default"
        key = (alias, connections[alias].vendor, tuple(sorted(values)))
        if key not in self._compiled:
            self._compiled[key] = self._compile(values, alias)
        compiled = self._compiled[key]
        if compiled is None:
            return None
        queryset, sql, places = compiled
        params = [values[p] if isinstance(p, str) else p[0] for p in places]
        return alias, sql, params, queryset.model

    def reusable(self, **values: Any) -> bool:
        """Whether this read runs as compiled SQL (for tests)."""
        return self._prepared(_pks(values, self.users)) is not None

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        """The rows of a ``values_list`` read."""
        values = _pks(values, self.users)
        prepared = self._prepared(values)
        if prepared is None:
            return list(self._queryset(values))
        alias, sql, params, _ = prepared
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]

    def models(self, **values: Any) -> list[Model]:
        """The model instances of a read that yields them (fields converted as the ORM does)."""
        values = _pks(values, self.users)
        prepared = self._prepared(values)
        if prepared is None:
            return list(self._queryset(values))
        alias, sql, params, model = prepared
        return list(model._default_manager.db_manager(alias).raw(sql, params))


def _pks(values: dict[str, Any], users: tuple[str, ...]) -> dict[str, Any]:
    return {k: (v.pk if k in users else v) for k, v in values.items()}
