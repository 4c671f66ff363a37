"""The search index's DDL, per database, shared by the migration and the post-migrate repair.

SQLite: an external-content FTS5 table over ``rooms_message.body`` kept current by triggers.
Triggers rather than calls from ``rooms.services``: every write reaches the index whatever path
it takes (the services, the admin, a cascade when a room is deleted, a bulk load), inside the
same transaction, so an edit or a deletion is searchable as it commits and never before.

PostgreSQL: a stored generated ``tsvector`` column with a GIN index. Stored rather than an
expression index because ranking (``ts_rank``) reads the vector of every match: an expression
index would recompute ``to_tsvector`` for each matching row of every query.
"""

import string

from django.db.backends.base.base import BaseDatabaseWrapper

FTS_TABLE = "search_message_fts"
# Porter stemming over unicode61 word splitting with accents folded (café = cafe).
FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"
PG_CONFIG = "english"
PG_COLUMN = "search_vector"

# prefix='2 3': the index also keeps every word's first 2 and 3 letters, so a short prefix
# ("com"*) reads one list instead of merging the lists of every word it begins.
SQLITE_TABLE = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(
    body, content='rooms_message', content_rowid='id', tokenize='{FTS_TOKENIZE}', prefix='2 3'
)"""

# External content: the index must be told the old text to remove it ('delete' command).
# Only a change of ``body`` touches the index (reactions and seqs do not).
SQLITE_TRIGGERS = {
    "search_message_ai": f"""
CREATE TRIGGER IF NOT EXISTS search_message_ai AFTER INSERT ON rooms_message BEGIN
    INSERT INTO {FTS_TABLE}(rowid, body) VALUES (new.id, new.body);
END""",
    "search_message_ad": f"""
CREATE TRIGGER IF NOT EXISTS search_message_ad AFTER DELETE ON rooms_message BEGIN
    INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body);
END""",
    "search_message_au": f"""
CREATE TRIGGER IF NOT EXISTS search_message_au AFTER UPDATE OF body ON rooms_message BEGIN
    INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO {FTS_TABLE}(rowid, body) VALUES (new.id, new.body);
END""",
}

SQLITE_REBUILD = f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')"

# PostgreSQL's parser reads "staging.example.com" as one host token, "<b>" as a tag it skips,
# "a/b/c" as a path: searching "example" would not find the host. Punctuation becomes spaces
# before parsing, so words split where FTS5's unicode61 splits them (letters and digits).
PG_PUNCTUATION = string.punctuation
PG_DOCUMENT = "translate(body, '{}', '{}')".format(
    PG_PUNCTUATION.replace("'", "''"), " " * len(PG_PUNCTUATION)
)

POSTGRES_CREATE = [
    f"""ALTER TABLE rooms_message ADD COLUMN IF NOT EXISTS {PG_COLUMN} tsvector
        GENERATED ALWAYS AS (to_tsvector('{PG_CONFIG}'::regconfig, {PG_DOCUMENT})) STORED""",
    f"CREATE INDEX IF NOT EXISTS search_message_vector ON rooms_message USING GIN ({PG_COLUMN})",
]
POSTGRES_DROP = [
    "DROP INDEX IF EXISTS search_message_vector",
    f"ALTER TABLE rooms_message DROP COLUMN IF EXISTS {PG_COLUMN}",
]


def index_create(connection: BaseDatabaseWrapper) -> None:
    """Create the index for ``connection``'s database (other databases have no search)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(SQLITE_TABLE)
            for ddl in SQLITE_TRIGGERS.values():
                cursor.execute(ddl)
            cursor.execute(SQLITE_REBUILD)
        elif connection.vendor == "postgresql":
            for ddl in POSTGRES_CREATE:
                cursor.execute(ddl)


def index_drop(connection: BaseDatabaseWrapper) -> None:
    """Remove the index (the migration's reverse)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for name in SQLITE_TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            cursor.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
        elif connection.vendor == "postgresql":
            for ddl in POSTGRES_DROP:
                cursor.execute(ddl)


def index_repair(connection: BaseDatabaseWrapper) -> bool:
    """Recreate SQLite triggers a later migration dropped, and rebuild the index; True if so.

    Django alters a SQLite table by copying it to a new one, which drops its triggers: without
    this, a future migration of ``rooms_message`` would silently stop the index's updates.
    """
    if connection.vendor != "sqlite":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE name IN (%s, %s, %s, %s)",
            [FTS_TABLE, *SQLITE_TRIGGERS],
        )
        present = {row[0] for row in cursor.fetchall()}
    if FTS_TABLE not in present:
        return False  # not migrated yet: the migration creates everything
    if present >= set(SQLITE_TRIGGERS):
        return False
    index_create(connection)
    return True
