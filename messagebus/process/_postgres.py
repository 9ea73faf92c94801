"""Process instances in a PostgreSQL table, on the outbox's pool.

Table layout (created on first use, idempotently; ``<table>`` defaults to
``messagebus_processes``)::

    <table>(process text, key text, state text NULL, state_version integer,
            version integer, started_at, updated_at, completed_at, expires_at
            (double precision, epoch seconds), PRIMARY KEY (process, key))
    <table>_expires_ix (expires_at)

The contract is :class:`~messagebus.process.ProcessStore`'s. :meth:`load_in` reads
with ``FOR UPDATE``: a concurrent run of the same instance waits at its own load until
this transaction ends, then reads the committed row, so updates of one instance are
serialised. Two starts of one key: the second ``INSERT ... ON CONFLICT DO NOTHING``
waits for the first's uncommitted row, then inserts nothing (it returns False and the
manager runs the message again, finding the instance); this needs READ COMMITTED, the
default.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

from messagebus._clock import TimeSource, wall_time
from messagebus._errors import InvalidArgumentError, ProcessConflictError
from messagebus._sql._postgres import PostgresPool, create_table, qualified
from messagebus._sql._schema import check_table_name
from messagebus._sql._store import SQLStore
from messagebus.process._store import ProcessRecord

if TYPE_CHECKING:
    from psycopg import Connection, sql
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresProcessStore"]

SCHEMA_VERSION = 1
"""The layout of the process table this code writes; recorded in ``messagebus_schema``."""

_TABLE = """CREATE TABLE IF NOT EXISTS {t} (
    process text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    state text,
    state_version integer NOT NULL,
    version integer NOT NULL,
    started_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    completed_at double precision,
    expires_at double precision,
    PRIMARY KEY (process, key)
)"""
_SELECT = """SELECT state, state_version, version, completed_at FROM {t}
WHERE process = %s AND key = %s"""
_START = """INSERT INTO {t} (process, key, state, state_version, version, started_at, updated_at)
VALUES (%s, %s, %s, %s, 1, %s, %s) ON CONFLICT (process, key) DO NOTHING"""
_SAVE = """UPDATE {t} SET state = %s, state_version = %s, version = version + 1, updated_at = %s
WHERE process = %s AND key = %s AND version = %s AND completed_at IS NULL"""
_COMPLETE = """UPDATE {t} SET state = NULL, version = version + 1, updated_at = %s,
    completed_at = %s, expires_at = %s
WHERE process = %s AND key = %s AND version = %s AND completed_at IS NULL"""
_CLEANUP = """DELETE FROM {t} WHERE (process, key) IN (
    SELECT process, key FROM {t} WHERE expires_at <= %s LIMIT %s FOR UPDATE SKIP LOCKED
)"""


class _Statements(NamedTuple):
    select: sql.Composed
    lock: sql.Composed
    start: sql.Composed
    save: sql.Composed
    complete: sql.Composed
    cleanup: sql.Composed


class PostgresProcessStore(SQLStore[PostgresPool]):
    """Keeps process instances in a PostgreSQL table; see the module.

    Made by :meth:`PostgresDatabase.processes
    <messagebus.postgres.PostgresDatabase.processes>` so that its ``*_in`` methods run
    in the outbox's units of work, or alone from a DSN or pool (for inspection and
    cleanup).

    Args:
        dsn_or_pool: a connection string, an open pool, or the database object.
        table: the table's name (letters, digits and underscores, at most 48).
        schema: the table's schema; None for the first schema of the search path.
        clock: seconds since the Unix epoch (``time.time``) or a ``Clock`` (a fake in tests).
    """

    def __init__(
        self,
        dsn_or_pool: str | ConnectionPool[Any] | PostgresPool,
        *,
        table: str = "messagebus_processes",
        schema: str | None = None,
        clock: TimeSource = time.time,
    ) -> None:
        from psycopg import sql  # noqa: PLC0415 - an optional extra

        name = qualified(schema, check_table_name(table))

        def compose(template: str) -> sql.Composed:
            return sql.SQL(template).format(t=name)

        self._sql = _Statements(
            select=compose(_SELECT),
            lock=compose(_SELECT + " FOR UPDATE"),
            start=compose(_START),
            save=compose(_SAVE),
            complete=compose(_COMPLETE),
            cleanup=compose(_CLEANUP),
        )
        self._clock = wall_time(clock)
        database = (
            dsn_or_pool
            if isinstance(dsn_or_pool, PostgresPool)
            else PostgresPool(dsn_or_pool, name="messagebus-processes")
        )
        self._on(database, alone=database is not dsn_or_pool)

        def set_up(connection: Connection[Any]) -> None:
            create_table(
                connection,
                schema=schema,
                table=table,
                version=SCHEMA_VERSION,
                definition=_TABLE,
                indexes=[("expires_ix", "expires_at")],
            )

        self._set_up = set_up
        database.add_set_up(set_up)

    def load_in(self, connection: Connection[Any], process: str, key: str) -> ProcessRecord | None:
        """Return the instance locked ``FOR UPDATE`` until the transaction ends, or None."""
        from psycopg.rows import tuple_row  # noqa: PLC0415

        if self._database.set_ups.pending(self._set_up):
            self._set_up(connection)  # first used inside a unit of work
        with connection.cursor(row_factory=tuple_row) as cursor:
            row = cursor.execute(self._sql.lock, (process, key)).fetchone()
        return None if row is None else _record(row)

    def start_in(
        self, connection: Connection[Any], process: str, key: str, state: str, state_version: int
    ) -> bool:
        """Insert a new instance at version 1; return False if one exists."""
        now = self._clock()
        cursor = connection.execute(self._sql.start, (process, key, state, state_version, now, now))
        return cursor.rowcount == 1

    def save_in(
        self,
        connection: Connection[Any],
        process: str,
        key: str,
        *,
        state: str,
        state_version: int,
        expected_version: int,
    ) -> None:
        """Store the next version of the state, if the row is at ``expected_version``."""
        cursor = connection.execute(
            self._sql.save, (state, state_version, self._clock(), process, key, expected_version)
        )
        if cursor.rowcount != 1:
            raise ProcessConflictError(_conflict(process, key, expected_version))

    def complete_in(
        self,
        connection: Connection[Any],
        process: str,
        key: str,
        *,
        expected_version: int,
        retention: float,
    ) -> None:
        """Replace the instance by a tombstone kept ``retention`` seconds (store's clock)."""
        now = self._clock()
        keep_until = now + retention
        cursor = connection.execute(
            self._sql.complete, (now, now, keep_until, process, key, expected_version)
        )
        if cursor.rowcount != 1:
            raise ProcessConflictError(_conflict(process, key, expected_version))

    async def get(self, process: str, key: str) -> ProcessRecord | None:
        """Return the instance as committed, or None."""
        rows = await self._database.fetch(self._sql.select, (process, key))
        return _record(rows[0]) if rows else None

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired tombstones; return how many went."""
        if limit < 0:
            raise InvalidArgumentError(f"limit must not be negative: {limit}")
        statement = self._sql.cleanup

        def delete(connection: Connection[Any]) -> int:
            with connection.transaction():
                return connection.execute(statement, (self._clock(), limit)).rowcount

        return await self._database.run(delete)


def _record(row: tuple[Any, ...]) -> ProcessRecord:
    state, state_version, version, completed_at = row
    return ProcessRecord(state, int(state_version), int(version), completed_at is not None)


def _conflict(process: str, key: str, expected_version: int) -> str:
    return (
        f"process {process!r} instance {key!r} is no longer at version {expected_version} "
        "(changed or completed by another run)"
    )
