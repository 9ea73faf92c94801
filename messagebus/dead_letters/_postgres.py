"""Dead letters in a PostgreSQL table, shared by every store and process that uses it.

Uses psycopg 3's *sync* API and a :class:`psycopg_pool.ConnectionPool`, called in worker
threads through :func:`anyio.to_thread.run_sync`: psycopg's async API runs on asyncio
only, and this store must run on trio too. Needs the ``messagebus[postgres]`` extra;
psycopg is imported when a store is made, so ``import messagebus`` works without it.

Table layout (created on first use, idempotently, in ``schema`` or else the first
schema of the search path; ``<table>`` defaults to ``messagebus_dead_letters``)::

    <table>(id text COLLATE "C" PRIMARY KEY, handler, message_type, message_id,
            correlation_id, body, error_type, error_message, traceback text NOT NULL,
            attempts integer NOT NULL,
            first_failed_at, last_failed_at timestamptz NOT NULL)
        -- body is text, not jsonb: the CloudEvents JSON comes back byte for byte
        -- id sorts in "C" order, like Python strings, for the (last_failed_at, id) order
    <table>_type_ix (message_type), <table>_handler_ix (handler),
    <table>_failed_ix (last_failed_at, id)
    messagebus_schema(table_name text PRIMARY KEY, version integer NOT NULL)
        -- one row per table messagebus manages, for later migrations

Limits: errors from PostgreSQL or the pool (unreachable server, timeouts, permissions)
propagate as psycopg / psycopg_pool exceptions, unchanged. The schema must exist
already. PostgreSQL text cannot hold NUL characters, so a record with a NUL in a field is
refused (:class:`psycopg.DataError`). Datetimes must be timezone-aware (naive
ones raise :class:`ValueError`) and come back in UTC whatever the session time zone. A
cancelled call still finishes its statement in the worker thread before the cancellation
takes effect. A schema version newer than this code knows raises :class:`RuntimeError`.
Calls after :meth:`~PostgresDeadLetterStore.aclose` raise
:class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self, TypeVar

import anyio
import anyio.to_thread

from messagebus.dead_letters._record import DeadLetter
from messagebus.dead_letters._sql import SCHEMA_VERSION, VERSION_TABLE, check_table_name, record

if TYPE_CHECKING:
    from psycopg import Connection, sql
    from psycopg_pool import ConnectionPool

# psycopg is imported inside the functions below (hence the PLC0415 waivers): it is an
# optional extra, and importing messagebus must work without it.

__all__ = ["PostgresDeadLetterStore"]

_T = TypeVar("_T")
_COLUMNS = (
    "id",
    "handler",
    "message_type",
    "message_id",
    "correlation_id",
    "body",
    "error_type",
    "error_message",
    "traceback",
    "attempts",
    "first_failed_at",
    "last_failed_at",
)
_TABLE = """CREATE TABLE IF NOT EXISTS {t} (
    id text COLLATE "C" PRIMARY KEY,
    handler text NOT NULL,
    message_type text NOT NULL,
    message_id text NOT NULL,
    correlation_id text NOT NULL,
    body text NOT NULL,
    error_type text NOT NULL,
    error_message text NOT NULL,
    traceback text NOT NULL,
    attempts integer NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at timestamptz NOT NULL
)"""
_INDEXES = (
    ("type_ix", "message_type"),
    ("handler_ix", "handler"),
    ("failed_ix", "last_failed_at, id"),
)


class _Statements(NamedTuple):
    """The statements for one table, composed once with quoted identifiers."""

    table: str
    schema: str | None
    qualified: sql.Identifier
    versions: sql.Identifier
    insert: sql.Composed
    select: sql.Composed
    delete: sql.Composed


class PostgresDeadLetterStore:
    """Keeps dead letters in a PostgreSQL table.

    ``dsn_or_pool`` is a connection string, for which the store makes its own pool (one
    to four connections), opened on first use or on ``async with`` and closed by
    :meth:`aclose`; or an open :class:`psycopg_pool.ConnectionPool`, which the store
    borrows connections from and never opens or closes. Adding a record whose id is
    already stored replaces it.
    """

    def __init__(
        self,
        dsn_or_pool: str | ConnectionPool[Any],
        *,
        table: str = "messagebus_dead_letters",
        schema: str | None = None,
    ) -> None:
        from psycopg_pool import ConnectionPool  # noqa: PLC0415

        self._statements = _compose(check_table_name(table), schema)
        self._owns_pool = isinstance(dsn_or_pool, str)
        # open=False: no I/O or threads in a constructor; _set_up opens it in a worker.
        self._pool: ConnectionPool[Any] = (
            ConnectionPool(
                dsn_or_pool, min_size=1, max_size=4, open=False, name="messagebus-dead-letters"
            )
            if isinstance(dsn_or_pool, str)
            else dsn_or_pool
        )
        # No more threads than connections: extra calls wait in the event loop, not in
        # threads blocked on the pool, which would starve anyio's shared thread limiter.
        self._limiter = anyio.CapacityLimiter(self._pool.max_size)
        self._ready = False
        self._closed = False
        self._setup_lock = threading.Lock()

    async def __aenter__(self) -> Self:
        await self._run(lambda connection: None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Refuse further calls; close the pool if the store made it."""
        self._closed = True
        if self._owns_pool:
            # Shielded: a cancelled close would leave the pool's threads running.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._pool.close)

    async def add(self, dead_letter: DeadLetter) -> None:
        """Keep ``dead_letter``."""
        params = [getattr(dead_letter, column) for column in _COLUMNS]
        _aware(dead_letter.first_failed_at, dead_letter.last_failed_at)
        await self._run(lambda connection: connection.execute(self._statements.insert, params))

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """Return the record with this id, or None."""
        rows = await self._fetch(
            _where(self._statements.select, {"id": dead_letter_id}), [dead_letter_id]
        )
        return _letter(rows[0]) if rows else None

    async def list(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[DeadLetter]:
        """Return records matching every filter given, oldest last failure first.

        ``since`` and ``until`` bound ``last_failed_at`` (inclusive, exclusive).
        A negative ``limit`` raises :class:`ValueError`.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative: {limit}")
        filters = _given(message_type=message_type, handler=handler, since=since, until=until)
        query = _where(self._statements.select, filters, order=True)
        rows = await self._fetch(query, [*filters.values(), limit])
        return tuple(_letter(row) for row in rows)

    async def delete(self, dead_letter_id: str) -> bool:
        """Remove the record with this id; return whether there was one."""
        query = _where(self._statements.delete, {"id": dead_letter_id})
        return await self._change(query, [dead_letter_id]) > 0

    async def purge(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        until: datetime | None = None,
    ) -> int:
        """Remove every record matching the filters given; return how many went."""
        filters = _given(message_type=message_type, handler=handler, until=until)
        return await self._change(_where(self._statements.delete, filters), list(filters.values()))

    async def _fetch(
        self, query: sql.Composed, params: Sequence[object]
    ) -> Sequence[tuple[Any, ...]]:
        from psycopg.rows import tuple_row  # noqa: PLC0415

        def fetch(connection: Connection[Any]) -> Sequence[tuple[Any, ...]]:
            # A borrowed pool may hand out connections with another row factory.
            with connection.cursor(row_factory=tuple_row) as cursor:
                return cursor.execute(query, params).fetchall()

        return await self._run(fetch)

    async def _change(self, query: sql.Composed, params: Sequence[object]) -> int:
        return await self._run(lambda connection: connection.execute(query, params).rowcount)

    async def _run(self, call: Callable[[Connection[Any]], _T]) -> _T:
        if self._closed:
            raise anyio.ClosedResourceError
        return await anyio.to_thread.run_sync(self._call, call, limiter=self._limiter)

    def _call(self, call: Callable[[Connection[Any]], _T]) -> _T:
        # Checked again in the thread: aclose() may have run while this call queued.
        if self._closed:
            raise anyio.ClosedResourceError
        if not self._ready:
            self._set_up()
        # Leaving the block commits, or rolls back if the call raised.
        with self._pool.connection() as connection:
            return call(connection)

    def _set_up(self) -> None:
        with self._setup_lock:
            if self._ready:
                return
            if self._owns_pool:
                self._pool.open()
            with self._pool.connection() as connection, connection.transaction():
                _create_schema(connection, self._statements)
            self._ready = True


def _aware(*moments: datetime) -> None:
    # psycopg would send a naive datetime as `timestamp`, read in the session time zone.
    for moment in moments:
        if moment.utcoffset() is None:
            raise ValueError(f"dead letter times must be timezone-aware: {moment!r}")


def _given(**filters: object) -> dict[str, object]:
    given = {key: value for key, value in filters.items() if value is not None}
    _aware(*(value for value in given.values() if isinstance(value, datetime)))
    return given


def _letter(row: Sequence[Any]) -> DeadLetter:
    # astimezone: psycopg returns timestamptz in the session's time zone.
    return record(row, row[10].astimezone(UTC), row[11].astimezone(UTC))


def _compose(table: str, schema: str | None) -> _Statements:
    from psycopg import sql  # noqa: PLC0415

    def name(name: str) -> sql.Identifier:
        return sql.Identifier(name) if schema is None else sql.Identifier(schema, name)

    qualified = name(table)
    columns = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
    insert = sql.SQL("INSERT INTO {t} ({c}) VALUES ({v}) ON CONFLICT (id) DO UPDATE SET {u}")
    return _Statements(
        table=table,
        schema=schema,
        qualified=qualified,
        versions=name(VERSION_TABLE),
        insert=insert.format(
            t=qualified,
            c=columns,
            v=sql.SQL(", ").join([sql.Placeholder()] * len(_COLUMNS)),
            u=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(column))
                for column in _COLUMNS[1:]
            ),
        ),
        select=sql.SQL("SELECT {c} FROM {t}").format(c=columns, t=qualified),
        delete=sql.SQL("DELETE FROM {t}").format(t=qualified),
    )


def _where(
    head: sql.Composed, filters: Mapping[str, object], *, order: bool = False
) -> sql.Composed:
    """Append a WHERE clause of fixed fragments, one per filter; values go as parameters."""
    from psycopg import sql  # noqa: PLC0415

    fragments = {
        "id": "id = %s",
        "message_type": "message_type = %s",
        "handler": "handler = %s",
        "since": "last_failed_at >= %s",
        "until": "last_failed_at < %s",
    }
    query = head
    if filters:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(
            sql.SQL(fragments[key]) for key in filters
        )
    if order:
        query += sql.SQL(" ORDER BY last_failed_at, id LIMIT %s")
    return query


def _create_schema(connection: Connection[Any], statements: _Statements) -> None:
    """Create the table, its indexes and its version row if missing; in a transaction."""
    from psycopg import sql  # noqa: PLC0415
    from psycopg.rows import tuple_row  # noqa: PLC0415

    table, versions = statements.table, statements.versions
    # CREATE TABLE IF NOT EXISTS races with itself across sessions (a duplicate pg_type
    # row); a transaction-scoped advisory lock per table makes creators take turns.
    connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        [f"messagebus:{statements.schema or ''}.{table}"],
    )
    connection.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {v} (table_name text PRIMARY KEY, version integer NOT NULL)"
        ).format(v=versions)
    )
    with connection.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute(
            sql.SQL("SELECT version FROM {v} WHERE table_name = %s").format(v=versions), [table]
        ).fetchone()
    if row is not None and row[0] > SCHEMA_VERSION:
        raise RuntimeError(
            f"table {table!r} has schema version {row[0]}; this messagebus knows up to "
            f"{SCHEMA_VERSION}: upgrade messagebus"
        )
    connection.execute(sql.SQL(_TABLE).format(t=statements.qualified))
    for suffix, columns in _INDEXES:
        connection.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} ({c})").format(
                i=sql.Identifier(f"{table}_{suffix}"), t=statements.qualified, c=sql.SQL(columns)
            )
        )
    connection.execute(
        sql.SQL(
            "INSERT INTO {v} (table_name, version) VALUES (%s, %s) "
            "ON CONFLICT (table_name) DO NOTHING"
        ).format(v=versions),
        [table, SCHEMA_VERSION],
    )
