"""A message stored in one PostgreSQL round trip: the hot path of ``services.message_post``.

The ORM path takes four round trips per message (BEGIN, ``UPDATE ... RETURNING`` for the seq,
INSERT, COMMIT), and a process's database thread waits for each. On PostgreSQL one statement
does it all: a data-modifying CTE takes the room's next seq (its UPDATE holds the room's row
lock, so writers of one room get consecutive seqs) and the INSERT uses it. Outside a
transaction the statement commits by itself, atomically: if the INSERT fails (a ``client_id``
used before) the UPDATE is undone with it, so the room's seq stays gapless. SQLite has no
UPDATE in a CTE, and needs none (no network between it and the process).
"""

from datetime import datetime

from django.db import connection

from chatapp.prepared import statement_cursor

from .models import Message, Room

# Columns written from the message; seq and changed_seq come from the CTE.
_FIELDS = [
    f
    for f in Message._meta.concrete_fields
    if not f.primary_key and f.attname not in ("seq", "changed_seq")
]


def one_trip_possible(room: Room, body: str) -> bool:
    """Whether ``message_insert`` may store this message.

    Not for private rooms and conversations: their membership check must see a removal that
    committed while this writer waited for the room's lock, which one statement's snapshot
    does not. Not for mentions: their notifications join the message's transaction. Not
    inside an outer transaction (a failure would break it; a savepoint costs round trips).
    """
    return (
        connection.vendor == "postgresql"
        and room.kind == Room.Kind.PUBLIC
        and "@" not in body
        and not connection.in_atomic_block
    )


def _sql() -> str:
    qn = connection.ops.quote_name
    room, message = qn(Room._meta.db_table), qn(Message._meta.db_table)
    columns = ", ".join(qn(f.column) for f in _FIELDS)
    values = ", ".join(["%s"] * len(_FIELDS))
    return (
        f"WITH taken AS (UPDATE {room} SET last_seq = last_seq + 1, last_activity = %s "
        "WHERE id = %s RETURNING last_seq) "
        f"INSERT INTO {message} ({columns}, seq, changed_seq) "
        f"SELECT {values}, taken.last_seq, taken.last_seq FROM taken RETURNING id, seq"
    )


def message_insert(message: Message, now: datetime) -> None:
    """Store ``message`` with its room's next seq in one statement; sets its id and seq.

    Raises ``IntegrityError`` (nothing stored, no seq taken) on a duplicate ``client_id``.
    """
    params = [connection.ops.adapt_datetimefield_value(now), message.room_id]
    params += [f.get_db_prep_save(getattr(message, f.attname), connection) for f in _FIELDS]
    with statement_cursor(connection) as cursor:  # a prepared statement
        cursor.execute(_sql(), params)
        row = cursor.fetchone()
    if row is None:  # the room is gone
        raise Room.DoesNotExist(message.room_id)
    message.pk, message.seq = row
    message.changed_seq = message.seq
    message._state.adding = False
    message._state.db = connection.alias
