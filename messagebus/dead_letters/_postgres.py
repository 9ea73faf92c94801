"""Dead letters in a PostgreSQL table, shared by every store and process that uses it.

Uses psycopg 3's *sync* API and a :class:`psycopg_pool.ConnectionPool`, called in worker
threads through :func:`anyio.to_thread.run_sync` (:mod:`messagebus._sql._postgres`):
psycopg's async API runs on asyncio only, and this store must run on trio too. Needs the
``anyio-messagebus[postgres]`` extra; psycopg is imported when a store is made, so
``import messagebus`` works without it.

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
refused (:class:`psycopg.DataError`). Datetimes must be timezone-aware (naive ones
raise :class:`~messagebus.InvalidArgumentError`) and come back in UTC whatever the
session time zone. A cancelled call still finishes its statement in the worker thread
before the cancellation takes effect. A schema version newer than this code knows
raises :class:`~messagebus.SchemaVersionError`. Calls after
:meth:`~PostgresDeadLetterStore.aclose` raise :class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from messagebus._errors import InvalidArgumentError
from messagebus._sql._postgres import PostgresPool, create_table, qualified
from messagebus._sql._schema import check_table_name
from messagebus._sql._store import SQLStore
from messagebus.dead_letters._record import DeadLetter
from messagebus.dead_letters._sql import SCHEMA_VERSION, record

if TYPE_CHECKING:
    from psycopg import sql
    from psycopg_pool import ConnectionPool

# psycopg is imported inside the functions below (hence the PLC0415 waivers): it is an
# optional extra, and importing messagebus must work without it.

__all__ = ["PostgresDeadLetterStore"]

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

    qualified: sql.Identifier
    insert: sql.Composed
    select: sql.Composed
    delete: sql.Composed


class PostgresDeadLetterStore(SQLStore[PostgresPool]):
    """Keeps dead letters in a PostgreSQL table.

    ``dsn_or_pool`` is a connection string, for which the store makes its own pool (one
    to four connections), opened on first use or on ``async with`` and closed by
    :meth:`aclose`; or an open :class:`psycopg_pool.ConnectionPool`, which the store
    borrows connections from and never opens or closes; or the database object to be
    on (:meth:`PostgresDatabase.dead_letters
    <messagebus.postgres.PostgresDatabase.dead_letters>` says the same). Adding a record whose id is
    already stored replaces it.
    """

    def __init__(
        self,
        dsn_or_pool: str | ConnectionPool[Any] | PostgresPool,
        *,
        table: str = "messagebus_dead_letters",
        schema: str | None = None,
    ) -> None:
        self._statements = _compose(check_table_name(table), schema)
        database = (
            dsn_or_pool
            if isinstance(dsn_or_pool, PostgresPool)
            else PostgresPool(dsn_or_pool, name="messagebus-dead-letters")
        )
        self._on(database, alone=database is not dsn_or_pool)
        database.add_set_up(
            lambda connection: create_table(
                connection,
                schema=schema,
                table=table,
                version=SCHEMA_VERSION,
                definition=_TABLE,
                indexes=_INDEXES,
            )
        )

    async def add(self, dead_letter: DeadLetter) -> None:
        """Keep ``dead_letter``."""
        params = [getattr(dead_letter, column) for column in _COLUMNS]
        _aware(dead_letter.first_failed_at, dead_letter.last_failed_at)
        await self._change(self._statements.insert, params)

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """Return the record with this id, or None."""
        rows = await self._database.fetch(
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
        A negative ``limit`` raises :class:`~messagebus.InvalidArgumentError`.
        """
        if limit is not None and limit < 0:
            raise InvalidArgumentError(f"limit must not be negative: {limit}")
        filters = _given(message_type=message_type, handler=handler, since=since, until=until)
        query = _where(self._statements.select, filters, order=True)
        rows = await self._database.fetch(query, [*filters.values(), limit])
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

    async def _change(self, query: sql.Composed, params: Sequence[object]) -> int:
        return await self._database.run(
            lambda connection: connection.execute(query, params).rowcount
        )


def _aware(*moments: datetime) -> None:
    # psycopg would send a naive datetime as `timestamp`, read in the session time zone.
    for moment in moments:
        if moment.utcoffset() is None:
            raise InvalidArgumentError(f"dead letter times must be timezone-aware: {moment!r}")


def _given(**filters: object) -> dict[str, object]:
    given = {key: value for key, value in filters.items() if value is not None}
    _aware(*(value for value in given.values() if isinstance(value, datetime)))
    return given


def _letter(row: Sequence[Any]) -> DeadLetter:
    # astimezone: psycopg returns timestamptz in the session's time zone.
    return record(row, row[10].astimezone(UTC), row[11].astimezone(UTC))


def _compose(table: str, schema: str | None) -> _Statements:
    from psycopg import sql  # noqa: PLC0415

    target = qualified(schema, table)
    columns = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
    insert = sql.SQL("INSERT INTO {t} ({c}) VALUES ({v}) ON CONFLICT (id) DO UPDATE SET {u}")
    return _Statements(
        qualified=target,
        insert=insert.format(
            t=target,
            c=columns,
            v=sql.SQL(", ").join([sql.Placeholder()] * len(_COLUMNS)),
            u=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(column))
                for column in _COLUMNS[1:]
            ),
        ),
        select=sql.SQL("SELECT {c} FROM {t}").format(c=columns, t=target),
        delete=sql.SQL("DELETE FROM {t}").format(t=target),
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
