"""The two search engines behind one interface: SQLite FTS5 and PostgreSQL full-text search.

Each backend answers two questions: which messages match, best first (``ranked_ids``), and a
highlighted excerpt of some of them (``snippets``). Highlights come back between the MARK_OPEN
and MARK_CLOSE sentinels; ``search.snippet`` escapes the text and turns them into ``<mark>``.
"""

from collections.abc import Sequence

from django.db import connection, transaction

from . import schema
from .query import ParsedQuery

MARK_OPEN = "\x02"
MARK_CLOSE = "\x03"
ELLIPSIS = "…"
SNIPPET_WORDS = 24
# The excerpt is built from the body with its punctuation swapped for private-use characters
# (word separators to the parser, as the spaces of the index are: schema.PG_DOCUMENT), then
# swapped back: the matched words are found where the index found them, and "<script>" is not
# taken for a tag that ts_headline would drop from the excerpt.
PG_SWAP_FROM = schema.PG_PUNCTUATION
PG_SWAP_TO = "".join(chr(0xE000 + i) for i in range(len(PG_SWAP_FROM)))
PG_SWAP_BACK = str.maketrans(PG_SWAP_TO, PG_SWAP_FROM)


def _fts5_match(parsed: ParsedQuery) -> str:
    """The FTS5 query: every word as a quoted string (no operator can be injected), ANDed."""
    terms = [f'"{word}"' for word in parsed.terms]
    if parsed.prefix:
        terms[-1] += "*"
    return " ".join(terms)


def _pg_tsquery(parsed: ParsedQuery) -> str:
    """The ``to_tsquery`` text: quoted words (letters and digits only) ANDed."""
    terms = [f"'{word}'" for word in parsed.terms]
    if parsed.prefix:
        terms[-1] += ":*"
    return " & ".join(terms)


def ranked_ids(
    parsed: ParsedQuery,
    rooms_sql: str,
    rooms_params: Sequence,
    window: int,
    limit: int,
    offset: int,
) -> list[int]:
    """Ids of the matching messages of the rooms selected by ``rooms_sql`` that are not
    deleted: among the newest ``window`` of them, best first, newest first among equals.

    Ranking every match costs ~10 µs a match: a common word matches 100,000 of 1,000,000
    messages, over a second. The window bounds that, and equals the results the pages can
    reach (search.selectors).
    """
    if connection.vendor == "postgresql":
        return _pg_ranked_ids(parsed, rooms_sql, rooms_params, window, limit, offset)
    fts = schema.FTS_TABLE
    # bm25() is lower for better matches; FTS5 yields rowids (message ids) newest first.
    sql = f"""
        SELECT id FROM (
            SELECT m.id, m.created, bm25({fts}) AS score
            FROM {fts} JOIN rooms_message m ON m.id = {fts}.rowid
            WHERE {fts} MATCH %s AND m.deleted IS NULL AND m.room_id IN ({rooms_sql})
            ORDER BY {fts}.rowid DESC LIMIT %s
        ) newest
        ORDER BY score, created DESC, id DESC
        LIMIT %s OFFSET %s"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [_fts5_match(parsed), *rooms_params, window, limit, offset])
        return [row[0] for row in cursor.fetchall()]


def _pg_ranked_ids(
    parsed: ParsedQuery,
    rooms_sql: str,
    rooms_params: Sequence,
    window: int,
    limit: int,
    offset: int,
) -> list[int]:
    query = _pg_tsquery(parsed)
    sql = f"""
        SELECT id FROM (
            SELECT m.id, m.created, m.{schema.PG_COLUMN} AS vector
            FROM rooms_message m
            WHERE m.{schema.PG_COLUMN} @@ to_tsquery('{schema.PG_CONFIG}', %s)
                AND m.deleted IS NULL AND m.room_id IN ({rooms_sql})
            ORDER BY m.id DESC LIMIT %s
        ) newest
        ORDER BY ts_rank(vector, to_tsquery('{schema.PG_CONFIG}', %s), 1) DESC,
            created DESC, id DESC
        LIMIT %s OFFSET %s"""
    with transaction.atomic(), connection.cursor() as cursor:
        # With the default random_page_cost (4, for spinning disks) the planner walks the
        # primary key backwards through ~250,000 rows for a word in 0.5 % of the messages
        # (300 ms) instead of fetching its 5,000 matches through the GIN index (30 ms). 1.1 is
        # the usual value for SSDs and cached tables; LOCAL: for this transaction only.
        cursor.execute("SET LOCAL random_page_cost = 1.1")
        cursor.execute(sql, [query, *rooms_params, window, query, limit, offset])
        return [row[0] for row in cursor.fetchall()]


def snippets(parsed: ParsedQuery, ids: Sequence[int]) -> dict[int, str]:
    """``{id: excerpt}`` of the messages ``ids``, matched words between the sentinels.

    A second query for the page's few rows: computed in the ranking query, an excerpt would be
    built for every match before the sort.
    """
    if not ids:
        return {}
    marks = ", ".join(["%s"] * len(ids))
    if connection.vendor == "postgresql":
        # One excerpt around the best match, like FTS5's snippet(); a short message whole.
        options = (
            f"StartSel={MARK_OPEN}, StopSel={MARK_CLOSE}, MaxWords={SNIPPET_WORDS}, MinWords=12"
        )
        sql = f"""
            SELECT m.id, ts_headline('{schema.PG_CONFIG}', translate(m.body, %s, %s), q, %s)
            FROM rooms_message m, to_tsquery('{schema.PG_CONFIG}', %s) q
            WHERE m.id IN ({marks})"""
        params = [PG_SWAP_FROM, PG_SWAP_TO, options, _pg_tsquery(parsed), *ids]
    else:
        fts = schema.FTS_TABLE
        # One pass over the ids' range: "rowid IN" alone makes FTS5 look each id up on its
        # own, and a prefix term merges the lists of all its words at every look-up (~100 ms
        # for 20 rows of 1,000,000). The unary + keeps the IN list a plain filter.
        sql = f"""
            SELECT rowid, snippet({fts}, 0, %s, %s, %s, {SNIPPET_WORDS}) FROM {fts}
            WHERE {fts} MATCH %s AND rowid BETWEEN %s AND %s AND +rowid IN ({marks})"""
        params = [MARK_OPEN, MARK_CLOSE, ELLIPSIS, _fts5_match(parsed), min(ids), max(ids), *ids]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if connection.vendor == "postgresql":
        return {pk: text.translate(PG_SWAP_BACK) for pk, text in rows}
    return dict(rows)
