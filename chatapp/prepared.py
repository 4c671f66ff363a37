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

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.models import Model, QuerySet
from django.utils.asyncio import async_unsafe

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


@dataclass(frozen=True, slots=True)
class Compiled:
    """A read's SQL, where each argument goes among its parameters, and, for a read of model
    instances, what ``ModelIterable`` works out per query: the fields of each row and their
    converters."""

    model: type[Model]
    sql: str
    places: list[Any]  # an argument's name, or (a constant,)
    fields: list[str] | None
    converters: list[tuple[int, Any, Any]]


def _model_rows(compiler: Any) -> tuple[list[str] | None, list[tuple[int, Any, Any]]]:
    """The attribute names of a model read's columns and its converters (None, [] otherwise)."""
    klass_info = compiler.klass_info
    if not klass_info or compiler.annotation_col_map or klass_info.get("related_klass_infos"):
        return None, []
    select = compiler.select
    columns = klass_info["select_fields"]
    if columns != list(range(len(select))):
        return None, []
    return [column[0].target.attname for column in select], _converters(compiler)


def _converters(compiler: Any) -> list[tuple[int, Any, Any]]:
    """What Django converts in each column of a read's rows (datetimes on SQLite)."""
    converters = compiler.get_converters([column[0] for column in compiler.select])
    return [(pos, convs, expression) for pos, (convs, expression) in converters.items()]


def _convert(row: tuple[Any, ...], compiled: Compiled, connection: Any) -> list[Any]:
    found = list(row)
    for pos, convs, expression in compiled.converters:
        for converter in convs:
            found[pos] = converter(found[pos], expression, connection)
    return found


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
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        places: list[Any] = []
        for param in params:
            name = next((k for k, m in markers.items() if param == m), None)
            places.append(name if name is not None else (param,))
        if {p for p in places if isinstance(p, str)} != set(markers) or any(
            str(m) in sql for m in markers.values()
        ):
            return None  # a marker was inlined or lost: not safe to reuse, build every time
        fields, converters = _model_rows(compiler)
        if fields is None:  # a ``values_list`` read (``converted``), or models made by ``raw``
            converters = _converters(compiler)
        return Compiled(queryset.model, sql, places, fields, converters)

    def _prepared(self, values: dict[str, Any]) -> tuple[str, Compiled, list[Any]] | None:
        """``(alias, compiled, params)`` for these values; None if the read is not reusable."""
        alias = router.db_for_read(None) or "default"
        key = (alias, connections[alias].vendor, tuple(sorted(values)))
        if key not in self._compiled:
            self._compiled[key] = self._compile(values, alias)
        compiled = self._compiled[key]
        if compiled is None:
            return None
        params = [values[p] if isinstance(p, str) else p[0] for p in compiled.places]
        return alias, compiled, params

    def reusable(self, **values: Any) -> bool:
        """Whether this read runs as compiled SQL (for tests)."""
        return self._prepared(_pks(values, self.users)) is not None

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        """The rows of a ``values_list`` read."""
        values = _pks(values, self.users)
        prepared = self._prepared(values)
        if prepared is None:
            return list(self._queryset(values))
        alias, compiled, params = prepared
        connection = connections[alias]
        if _plain(connection):
            return _plain_rows(connection, [(compiled.sql, params)])[0]
        with statement_cursor(connection) as cursor:
            cursor.execute(compiled.sql, params)
            return [tuple(row) for row in cursor.fetchall()]

    def converted(self, rows: list[tuple[Any, ...]], **values: Any) -> list[list[Any]]:
        """Rows of this ``values_list`` read (``rows``, or a ``Read``'s in ``reads_run``) with
        their values converted as the queryset would give them: ``rows`` leaves them as the
        database driver returns them, which is enough for integers and strings only."""
        values = _pks(values, self.users)
        prepared = self._prepared(values)
        if prepared is None:
            return [list(row) for row in rows]  # run as the queryset: converted already
        alias, compiled, _ = prepared
        connection = connections[alias]
        return [_convert(row, compiled, connection) for row in rows]

    def models(self, **values: Any) -> list[Model]:
        """The model instances of a read that yields them, made as ``ModelIterable`` makes
        them (its converters, ``Model.from_db``)."""
        values = _pks(values, self.users)
        prepared = self._prepared(values)
        if prepared is None:
            return list(self._queryset(values))
        alias, compiled, params = prepared
        if compiled.fields is None:
            model = compiled.model
            return list(model._default_manager.db_manager(alias).raw(compiled.sql, params))
        with statement_cursor(connections[alias]) as cursor:
            cursor.execute(compiled.sql, params)
            return _made(cursor.fetchall(), alias, compiled)

    def made(self, rows: list[Any], **values: Any) -> list[Model]:
        """``models`` of the rows a ``Read`` of this read got (in ``reads_run``)."""
        prepared = self._prepared(_pks(values, self.users))
        if prepared is None:
            return list(rows)  # run as the queryset: instances already
        alias, compiled, _ = prepared
        if compiled.fields is None:
            return self.models(**values)  # made by ``raw``: not from these rows
        return _made(rows, alias, compiled)


def _made(rows: list[Any], alias: str, compiled: Compiled) -> list[Model]:
    """Instances of ``compiled``'s model, made as ``ModelIterable`` makes them (its
    converters, ``Model.from_db``)."""
    connection = connections[alias]
    return [
        compiled.model.from_db(alias, compiled.fields, _convert(row, compiled, connection))
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Read:
    """A ``rows`` read with its values and what makes its answer of the rows: run alone
    (``run``) or with others in one round trip to the database (``reads_run``)."""

    prepared: Prepared
    values: dict[str, Any]
    finish: Callable[[list[tuple[Any, ...]]], Any]

    def run(self) -> Any:
        return self.finish(self.prepared.rows(**self.values))


def reads_run(*reads: Read) -> list[Any]:
    """Each read's answer, as ``read.run()`` gives it.

    On PostgreSQL the reads go out together in one pipeline, one round trip, each as its own
    prepared statement (``statement_cursor``), and are read back result by result: a socket's
    connect reads its room, its notification count and its sidebar, and in a reconnect storm
    the three round trips in series on the process's one database thread were the tail of
    every catch-up (S5, docs/performance.md). On SQLite they run one after another on one plain
    cursor (``_plain_rows``). A read that is not reusable runs alone.
    """
    prepared = [r.prepared._prepared(_pks(r.values, r.prepared.users)) for r in reads]
    aliases = {p[0] for p in prepared if p is not None}
    if len(reads) < 2 or None in prepared or len(aliases) != 1:
        return [read.run() for read in reads]
    connection = connections[next(iter(aliases))]
    if _plain(connection):
        statements = [(compiled.sql, params) for _, compiled, params in prepared]  # type: ignore[misc]
        found = _plain_rows(connection, statements)
        return [read.finish(rows) for read, rows in zip(reads, found, strict=True)]
    if connection.vendor != "postgresql":
        return [read.run() for read in reads]
    if _unwatched(connection):
        statements = [(compiled.sql, params) for _, compiled, params in prepared]  # type: ignore[misc]
        found = _pipelined_rows(connection, statements)
        return [read.finish(rows) for read, rows in zip(reads, found, strict=True)]
    with contextlib.ExitStack() as stack:
        cursors = [stack.enter_context(statement_cursor(connection)) for _ in reads]
        with connection.wrap_database_errors, connection.connection.pipeline():
            for cursor, (_, compiled, params) in zip(cursors, prepared, strict=True):  # type: ignore[misc]
                cursor.execute(compiled.sql, params)
        return [
            read.finish([tuple(row) for row in cursor.fetchall()])
            for read, cursor in zip(reads, cursors, strict=True)
        ]


def _unwatched(connection: Any) -> bool:
    """Whether nothing must see each statement through Django's cursor (the query log of
    ``DEBUG`` and of ``CaptureQueriesContext``, an ``execute_wrapper``): ``_plain_rows`` and
    ``_pipelined_rows`` may then run them, and otherwise Django's cursor does, as before."""
    return not connection.queries_logged and not connection.execute_wrappers


def _plain(connection: Any) -> bool:
    """Whether ``_plain_rows`` may run statements on ``connection``: SQLite, unwatched."""
    return connection.vendor == "sqlite" and _unwatched(connection)


def _checked(connection: Any) -> None:
    """What Django's cursor checks before a statement: the connection is opened,
    health-checked and used by its own thread only, and not in a broken transaction."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()


@async_unsafe
def _pipelined_rows(connection: Any, statements: list[tuple[str, list[Any]]]) -> list[list[Any]]:
    """The rows of each ``(sql, params)`` on PostgreSQL: one pipeline, one round trip, and
    each distinct statement run for all its values at once, prepared as ``statement_cursor``
    prepares it: as one statement over arrays of them (``_lateral``), or else by psycopg's
    ``executemany``, whose result sets come back one by one.

    A reconnect storm's connects each read their room, notification count and sidebar: a
    cursor and Django's wrapper per read, ~90 reads per batch of connects, were a fifth of a
    worker's CPU (bench S5, docs/performance.md); here a batch costs a cursor per statement.
    ``executemany`` still sent, and psycopg still handled in Python, a statement per read:
    one statement per kind of read takes a batch of 30 connects' reads from 91 to 31 µs of
    the worker's CPU per connect, and from 108 to 43 µs of time (docs/performance.md).
    """
    _checked(connection)
    runs: dict[str, list[int]] = {}
    for i, (sql, _) in enumerate(statements):
        runs.setdefault(sql, []).append(i)
    found: list[list[Any]] = [[] for _ in statements]
    with connection.wrap_database_errors:
        raw = connection.connection
        cursors: list[tuple[Any, list[int], bool]] = []
        try:
            with raw.pipeline():
                for sql, run in runs.items():
                    cursor = _preparing_cursor_class()(raw)
                    values = [statements[i][1] for i in run]
                    together = _lateral(sql, values) if len(run) > 1 else None
                    cursors.append((cursor, run, together is not None))
                    if together is not None:
                        cursor.execute(*together)
                    else:
                        cursor.executemany(sql, values, returning=True)
            for cursor, run, together in cursors:
                if together:  # each row after the number of its values (from 1)
                    for row in cursor.fetchall():
                        found[run[row[0] - 1]].append(tuple(row[1:]))
                    continue
                for n, i in enumerate(run):
                    if n:
                        cursor.nextset()
                    found[i] = [tuple(row) for row in cursor.fetchall()]
        finally:
            for cursor, _, _ in cursors:
                cursor.close()
    return found


def _lateral(sql: str, runs: list[list[Any]]) -> tuple[str, list[Any]] | None:
    """One statement that runs ``sql`` once for each parameter list of ``runs`` on PostgreSQL:
    the lists as columns of arrays, unnested ``WITH ORDINALITY`` and joined ``LATERAL`` to the
    statement, each of whose rows comes back after the number of its list. None when a
    position's values are not all integers or all strings (its array's type), or the SQL holds
    a ``%%`` (a literal percent sign, which the placeholders cannot be told from).

    Each read's rows come back in its own order: PostgreSQL does not merge a subquery that
    sorts (or limits, or groups) into the outer query, and joins one that refers to the outer
    row (``LATERAL``) in a nested loop, the numbered rows outside, so a read's rows come
    together as the read gives them; a read without an order has none here either."""
    if "%%" in sql or not runs[0]:
        return None
    columns: list[tuple[str, list[Any]]] = []
    for values in zip(*runs, strict=True):
        if all(type(v) is not bool and isinstance(v, int) for v in values):
            columns.append(("int8[]", [int(v) for v in values]))
        elif all(isinstance(v, str) for v in values):
            columns.append(("text[]", [str.__str__(v) for v in values]))
        else:
            return None
    parts = sql.split("%s")
    if len(parts) != len(columns) + 1:
        return None
    names = [f"_p{k}" for k in range(len(columns))]
    inner = parts[0] + "".join(
        f"_v.{name}{part}" for name, part in zip(names, parts[1:], strict=True)
    )
    arrays = ", ".join(f"%s::{kind}" for kind, _ in columns)
    statement = (
        f"SELECT _v._n, _q.* FROM unnest({arrays}) WITH ORDINALITY AS _v({', '.join(names)}, _n)"
        f" CROSS JOIN LATERAL ({inner}) AS _q"
    )
    return statement, [values for _, values in columns]


_qmark: dict[str, str] = {}  # Django's SQL (format style) → SQLite's (qmark), as Django converts


@async_unsafe
def _plain_rows(connection: Any, statements: list[tuple[str, list[Any]]]) -> list[list[Any]]:
    """The rows of each ``(sql, params)``, run one after another on one SQLite cursor.

    What Django's cursor does around a statement, done once for them all: Django's wrapper costs
    ~20 µs a statement (a cursor and its wrapper, the SQL's conversion to SQLite's placeholders
    by a regular expression, error wrapping) against the 2-8 µs SQLite takes to run a connect's
    read, and a reconnect storm makes 15,000 of them (bench S5, docs/performance.md). The same
    checks stand: the connection is opened, health-checked and used by its own thread only, a
    statement in a broken transaction is refused, errors come out as Django's.
    """
    _checked(connection)
    with connection.wrap_database_errors:
        cursor = connection.connection.cursor()
        try:
            found = []
            for sql, params in statements:
                qmark = _qmark.get(sql)
                if qmark is None:
                    converter = connection.create_cursor()
                    qmark = _qmark[sql] = converter.convert_query(sql)
                    converter.close()
                found.append(cursor.execute(qmark, params).fetchall())
            return found
        finally:
            cursor.close()


@contextlib.contextmanager
def statement_cursor(connection: Any) -> Iterator[Any]:
    """A cursor of ``connection`` (Django's wrapper: its query log, its errors) for statements
    that run again and again with new values: the reads above, a message's store
    (``rooms.store``).

    On PostgreSQL each statement it runs is a prepared statement, parsed and planned once per
    database connection and then only executed. Django's default cursor sends every statement
    as text with its values in it, and PostgreSQL parsed and planned the sidebar's read anew on
    every connect (plan 154 µs, run 24 µs: in a reconnect storm 1.2 s of CPU planning against
    0.3 s running, bench S5 with ``pg_stat_statements``, docs/performance.md). ``DB_PREPARED=0``
    turns it off (psycopg's ``prepare_threshold`` None, e.g. behind a pooler that cannot keep
    prepared statements): the same statements, planned every time. Elsewhere Django's cursor.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = _preparing_cursor_class()(connection.connection)
    cursor = connection._prepare_cursor(raw)
    try:
        yield cursor
    finally:
        cursor.close()


@functools.cache
def _preparing_cursor_class() -> type:
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        """Binds values on the server and prepares every statement it runs (psycopg keeps the
        prepared ones per connection, dropping the least used past ``prepared_max``)."""

        def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
            return super().execute(query, params, prepare=True, **options)

        def _send_query_prepared(self, name: bytes, pgq: Any, **options: Any) -> None:
            # What Django's query log shows (``cursor._query``), as a statement not prepared
            # sets it: the SQL with its placeholders.
            self._query = pgq
            super()._send_query_prepared(name, pgq, **options)

    return PreparingCursor


def _pks(values: dict[str, Any], users: tuple[str, ...]) -> dict[str, Any]:
    return {k: (v.pk if k in users else v) for k, v in values.items()}
