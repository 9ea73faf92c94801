"""The event log in PostgreSQL tables, shared by every store and process that uses them.

Uses psycopg 3's *sync* API from worker threads (:mod:`messagebus._sql._postgres`), so
it runs on asyncio and trio alike. Needs the ``anyio-messagebus[postgres]`` extra; psycopg is
imported when a log is made, so ``import messagebus`` works without it.

Table layout (created on first use, idempotently, in ``schema`` or else the first
schema of the search path; ``<table>`` defaults to ``messagebus_events``)::

    <table>(position bigint PRIMARY KEY, stream text COLLATE "C" NULL,
            sequence bigint NULL, message_id, message_type, body text NOT NULL,
            recorded_at timestamptz NOT NULL, UNIQUE (stream, sequence))
        -- body is text, not jsonb: the CloudEvents JSON comes back byte for byte
    <table>_head(id integer PRIMARY KEY CHECK (id = 1), position bigint NOT NULL)
        -- one row: the last position handed out
    <table>_checkpoints(name text PRIMARY KEY, position bigint NOT NULL,
                        saved_at timestamptz NOT NULL)
    messagebus_schema(table_name text PRIMARY KEY, version integer NOT NULL)

Positions, and why not a sequence: a PostgreSQL sequence hands out numbers at once but
transactions commit in any order, so a reader could see position 8 committed while 7 is
still in flight, move its cursor past 7 and never see it (and a rolled back append
leaves a gap for ever). Instead an append first runs ``UPDATE <table>_head SET position
= position + n RETURNING position``: the head row's lock is held until the append's
transaction ends, so appenders take turns, each batch gets the positions right after the
last committed one, and a rollback gives its positions back. A reader that sees
position ``p`` therefore sees every position before it. The head row lock was chosen
over ``pg_advisory_xact_lock`` plus ``max(position) + 1``: both serialise appends the
same way (``benchmarks/eventlog.py`` measures the throughput), but the row never hands
out a position twice even if rows are deleted by hand, needs no lock key shared by
convention across processes, and shows in ``pg_locks`` as a lock on a named table. The
cost is that appends are serial: one transaction at a time holds the head, for as long
as that transaction lasts (keep units of work that append short). Sequences are
``max(sequence) + 1`` within the stream, computed in the INSERT, after the head is locked.

``append_in(connection, envelopes)`` runs the same statements on the caller's own
connection, inside the caller's transaction (begun already or begun by it, psycopg's
default; on an autocommit connection, a transaction of its own), so that events commit
or roll back with the caller's writes. Under REPEATABLE READ or SERIALIZABLE a
concurrent append makes it fail with a serialization error, to be retried by the caller
as usual at those levels.

Retention: nothing in this API updates or deletes. Deleting old rows with SQL is the
user's own explicit act: positions stay unique (the head row), but a stream whose every
row is gone starts again at sequence 1, and subscribers behind the deleted range skip it.

Limits: errors from PostgreSQL or the pool propagate as psycopg / psycopg_pool
exceptions, unchanged. The schema must exist already. A cancelled call still finishes
in its worker thread. A schema version newer than this code knows raises
:class:`~messagebus.SchemaVersionError`. Calls after :meth:`~PostgresEventLog.aclose` raise
:class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._messages import Event, Message
from messagebus._sql._postgres import PostgresPool, create_table, qualified
from messagebus._sql._schema import check_table_name
from messagebus._sql._store import SQLStore
from messagebus.eventlog._record import (
    LogRecord,
    UsesCodec,
    check_events,
    check_read,
    decode_record,
    make_record,
    numbered,
)
from messagebus.eventlog._subscription import AppendSignal, Subscribable

if TYPE_CHECKING:
    from psycopg import Connection, sql
    from psycopg_pool import ConnectionPool

# psycopg is imported inside the functions below (hence the PLC0415 waivers): it is an
# optional extra, and importing messagebus must work without it.

__all__ = ["PostgresEventLog"]

SCHEMA_VERSION = 1
"""The layout of the event log tables this code writes; recorded in ``messagebus_schema``."""

_LOG = """CREATE TABLE IF NOT EXISTS {t} (
    position bigint PRIMARY KEY,
    stream text COLLATE "C",
    sequence bigint,
    message_id text NOT NULL,
    message_type text NOT NULL,
    body text NOT NULL,
    recorded_at timestamptz NOT NULL,
    UNIQUE (stream, sequence)
)"""
_HEAD = """CREATE TABLE IF NOT EXISTS {t} (
    id integer PRIMARY KEY CHECK (id = 1),
    position bigint NOT NULL
)"""
_CHECKPOINTS = """CREATE TABLE IF NOT EXISTS {t} (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    saved_at timestamptz NOT NULL
)"""

_ADVANCE = "UPDATE {h} SET position = position + %s WHERE id = 1 RETURNING position"
# One statement for any batch size: the columns travel as arrays. A sequence is the
# stream's last one before this statement plus k, the event's rank in its stream within
# the batch; the statement's snapshot is taken after the head's lock was granted.
_INSERT = """INSERT INTO {t}
    (position, stream, sequence, message_id, message_type, body, recorded_at)
SELECT p, s, coalesce((SELECT max(sequence) FROM {t} WHERE stream = s), 0) + k,
    i, m, b, %s::timestamptz
FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[])
    AS u(p, s, k, i, m, b)
RETURNING position, sequence"""
_SELECT = "SELECT position, stream, sequence, body, recorded_at FROM {t}"
_READ = _SELECT + " WHERE position >= %s ORDER BY position LIMIT %s"
_READ_STREAM = _SELECT + " WHERE stream = %s AND sequence >= %s ORDER BY sequence LIMIT %s"
_HEAD_POSITION = "SELECT position FROM {h} WHERE id = 1"
_LOAD = "SELECT position FROM {c} WHERE name = %s"
_SAVE = """INSERT INTO {c} (name, position, saved_at) VALUES (%s, %s, clock_timestamp())
ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, saved_at = EXCLUDED.saved_at"""
_RESET = "DELETE FROM {c} WHERE name = %s"


class _Statements(NamedTuple):
    """The statements for one set of tables, composed once with quoted names."""

    advance: sql.Composed
    insert: sql.Composed
    read: sql.Composed
    read_stream: sql.Composed
    head: sql.Composed
    load: sql.Composed
    save: sql.Composed
    reset: sql.Composed


class PostgresEventLog(SQLStore[PostgresPool], Subscribable, UsesCodec):
    """Keeps the event log in PostgreSQL tables; see the module.

    ``dsn_or_pool`` is a connection string, for which the log makes its own pool (one
    to four connections), opened on first use or on ``async with`` and closed by
    :meth:`aclose`; or an open :class:`psycopg_pool.ConnectionPool`, which the log
    borrows connections from and never opens or closes; or the database object to be
    on (:meth:`PostgresDatabase.event_log
    <messagebus.postgres.PostgresDatabase.event_log>` says the same), whose outbox's
    units of work it can then append in.

    Args:
        dsn_or_pool: where to connect, as above.
        codec: encodes appended envelopes and decodes them on read; by default the
            codec of the MessageBus the log is given to.
        schema: the tables' schema; None for the first schema of the search path.
        table: the log table's name; the head and checkpoint tables add suffixes.
    """

    def __init__(
        self,
        dsn_or_pool: str | ConnectionPool[Any] | PostgresPool,
        *,
        codec: WireCodec | None = None,
        schema: str | None = None,
        table: str = "messagebus_events",
    ) -> None:
        self._codec = codec
        self._schema = schema
        self._table = check_table_name(table)
        self._statements = _compose(schema, table)
        database = (
            dsn_or_pool
            if isinstance(dsn_or_pool, PostgresPool)
            else PostgresPool(dsn_or_pool, name="messagebus-eventlog")
        )
        self._on(database, alone=database is not dsn_or_pool)
        database.add_set_up(self._set_up)
        self._signal = AppendSignal()
        self._checkpoints = _Checkpoints(self._database, self._statements)

    async def append(self, envelopes: Sequence[Envelope[Message]]) -> Sequence[LogRecord]:
        """Append ``envelopes`` in order, in one transaction; return their records."""
        events = check_events(envelopes)
        if not events:
            return ()
        bodies = [self.codec.encode(envelope).decode() for envelope in events]
        records = await self._database.run(
            lambda connection: self._insert_rows(connection, events, bodies)
        )
        self._signal.notify()
        return records

    def append_in(
        self, connection: Connection[Any], envelopes: Sequence[Envelope[Message]]
    ) -> Sequence[LogRecord]:
        """Append ``envelopes`` on the caller's connection, in the caller's transaction.

        Blocking: call it from a worker thread. The events commit or roll back with the
        caller's transaction (or, on an autocommit connection, in a transaction of
        their own); until it ends, other appends wait. The log must have
        been opened first (``async with`` or a first call), so that its tables exist.
        Subscriptions of this object learn of the append only when the caller calls
        :meth:`notify_appended` after the commit, or by polling.
        """
        events = check_events(envelopes)
        if not events:
            return ()
        bodies = [self.codec.encode(envelope).decode() for envelope in events]
        return self._insert_rows(connection, events, bodies)

    async def read(self, from_position: int = 1, limit: int = 1000) -> Sequence[LogRecord]:
        """Return up to ``limit`` records from ``from_position`` on, by position."""
        check_read(from_position, limit)
        return await self._select(self._statements.read, [from_position, limit])

    async def read_stream(
        self, stream: str, from_sequence: int = 1, limit: int | None = None
    ) -> Sequence[LogRecord]:
        """Return ``stream``'s records from ``from_sequence`` on, by sequence."""
        check_read(from_sequence, limit)
        return await self._select(self._statements.read_stream, [stream, from_sequence, limit])

    async def last_position(self) -> int:
        """Return the position of the last committed record; 0 for an empty log."""
        rows = await self._database.fetch(self._statements.head, [])
        return int(rows[0][0])

    def _insert_rows(
        self, connection: Connection[Any], events: Sequence[Envelope[Event]], bodies: list[str]
    ) -> Sequence[LogRecord]:
        from psycopg.rows import tuple_row  # noqa: PLC0415

        statements = self._statements
        # Ranks within the batch per stream; the statement adds each stream's last sequence.
        ranks = numbered(events, 0, {})
        # On an autocommit connection, a transaction of its own: the head's row lock must
        # be held until the rows are in. Otherwise the statements join the caller's
        # transaction, begun or not (transaction() would commit one that had not begun).
        # tuple_row: a borrowed pool may hand out connections with another row factory.
        scope = connection.transaction() if connection.autocommit else nullcontext()
        with scope, connection.cursor(row_factory=tuple_row) as cursor:
            # The first statement takes the lock; the next one reads after the previous
            # holder's commit (READ COMMITTED takes a new snapshot per statement).
            row = cursor.execute(statements.advance, [len(events)]).fetchone()
            assert row is not None  # the head row is made with the tables
            first = row[0] - len(events) + 1
            now = datetime.now(UTC)
            cursor.execute(
                statements.insert,
                [
                    now,
                    list(range(first, first + len(events))),
                    [stream for _, stream, _ in ranks],
                    [rank for _, _, rank in ranks],
                    [envelope.message_id for envelope in events],
                    [envelope.message_type for envelope in events],
                    bodies,
                ],
            )
            sequences: dict[int, int | None] = dict(cursor.fetchall())
        return tuple(
            make_record(envelope, position, envelope.group_key, sequences[position], now)
            for position, envelope in enumerate(events, start=first)
        )

    async def _select(self, query: sql.Composed, params: list[object]) -> Sequence[LogRecord]:
        from psycopg.rows import tuple_row  # noqa: PLC0415

        def select(connection: Connection[Any]) -> Sequence[LogRecord]:
            with connection.cursor(row_factory=tuple_row) as cursor:
                rows = cursor.execute(query, params).fetchall()
            # Decoded in the worker thread too, keeping the event loop free.
            return tuple(
                decode_record(self.codec, (*row[:4], row[4].astimezone(UTC))) for row in rows
            )

        return await self._database.run(select)

    def _set_up(self, connection: Connection[Any]) -> None:
        from psycopg import sql  # noqa: PLC0415

        for suffix, definition in (("", _LOG), ("_head", _HEAD), ("_checkpoints", _CHECKPOINTS)):
            create_table(
                connection,
                schema=self._schema,
                table=self._table + suffix,
                version=SCHEMA_VERSION,
                definition=definition,
            )
        connection.execute(
            sql.SQL("INSERT INTO {h} VALUES (1, 0) ON CONFLICT (id) DO NOTHING").format(
                h=qualified(self._schema, self._table + "_head")
            )
        )


class _Checkpoints:
    """The checkpoint store in the log's database, on the log's pool."""

    def __init__(self, database: PostgresPool, statements: _Statements) -> None:
        self._database = database
        self._statements = statements

    async def load(self, name: str) -> int | None:
        """Return the last position ``name`` processed, or None."""
        rows = await self._database.fetch(self._statements.load, [name])
        return int(rows[0][0]) if rows else None

    async def save(self, name: str, position: int) -> None:
        """Record that ``name`` has processed everything up to ``position``."""
        await self._run(self._statements.save, [name, position])

    async def reset(self, name: str) -> None:
        """Forget ``name``'s position, so that it replays the log from the start."""
        await self._run(self._statements.reset, [name])

    async def _run(self, query: sql.Composed, params: list[object]) -> None:
        await self._database.run(lambda connection: connection.execute(query, params))


def _compose(schema: str | None, table: str) -> _Statements:
    from psycopg import sql  # noqa: PLC0415

    names = {
        "t": qualified(schema, table),
        "h": qualified(schema, table + "_head"),
        "c": qualified(schema, table + "_checkpoints"),
    }

    def compose(template: str) -> sql.Composed:
        return sql.SQL(template).format(**names)

    return _Statements(
        advance=compose(_ADVANCE),
        insert=compose(_INSERT),
        read=compose(_READ),
        read_stream=compose(_READ_STREAM),
        head=compose(_HEAD_POSITION),
        load=compose(_LOAD),
        save=compose(_SAVE),
        reset=compose(_RESET),
    )
