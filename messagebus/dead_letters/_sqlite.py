"""Dead letters in an SQLite file, shared by every store and process that opens it.

Runs the stdlib :mod:`sqlite3` in worker threads through :func:`anyio.to_thread.run_sync`,
so it works on asyncio and trio alike. Each store holds one connection and lets one
thread at a time use it; concurrent calls on one store queue in the event loop. Several
stores or processes may write one file at once: the file is in WAL mode, and a writer
waits up to ``BUSY_TIMEOUT`` (5) seconds for another's lock before ``sqlite3`` raises.

Table layout (created on first use, idempotently; ``<table>`` defaults to
``messagebus_dead_letters``)::

    <table>(id TEXT PRIMARY KEY, handler, message_type, message_id, correlation_id,
            body, error_type, error_message, traceback TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            first_failed_at, last_failed_at INTEGER NOT NULL)
        -- times are microseconds since the Unix epoch, UTC: exact and ordered
    <table>_type_ix (message_type), <table>_handler_ix (handler),
    <table>_failed_ix (last_failed_at, id)
    messagebus_schema(table_name TEXT PRIMARY KEY, version INTEGER NOT NULL)
        -- one row per table messagebus manages, for later migrations

Limits: errors from SQLite (a lock held longer than the busy timeout, a full disk, a
read-only file) propagate as :mod:`sqlite3` exceptions, unchanged. Datetimes must be
timezone-aware (naive ones raise :class:`~messagebus.InvalidArgumentError`). A
cancelled call still finishes its statement in the worker thread before the
cancellation takes effect. A schema version newer than this code knows raises
:class:`~messagebus.SchemaVersionError`. Calls after
:meth:`~SQLiteDeadLetterStore.aclose` raise :class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from messagebus._errors import InvalidArgumentError
from messagebus._sql._schema import check_table_name
from messagebus._sql._sqlite import SQLiteConnection, create_table
from messagebus._sql._store import SQLStore
from messagebus.dead_letters._record import DeadLetter
from messagebus.dead_letters._sql import SCHEMA_VERSION, record

__all__ = ["SQLiteDeadLetterStore"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_COLUMNS = (
    "id, handler, message_type, message_id, correlation_id, body, error_type, "
    "error_message, traceback, attempts, first_failed_at, last_failed_at"
)
_TABLE = (
    "id TEXT PRIMARY KEY NOT NULL, handler TEXT NOT NULL, message_type TEXT NOT NULL, "
    "message_id TEXT NOT NULL, correlation_id TEXT NOT NULL, body TEXT NOT NULL, "
    "error_type TEXT NOT NULL, error_message TEXT NOT NULL, traceback TEXT NOT NULL, "
    "attempts INTEGER NOT NULL, first_failed_at INTEGER NOT NULL, "
    "last_failed_at INTEGER NOT NULL"
)
_INDEXES = (
    ("type_ix", "message_type"),
    ("handler_ix", "handler"),
    ("failed_ix", "last_failed_at, id"),
)


def _micros(moment: datetime) -> int:
    if moment.utcoffset() is None:
        raise InvalidArgumentError(f"dead letter times must be timezone-aware: {moment!r}")
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def _letter(row: Sequence[Any]) -> DeadLetter:
    return record(row, _moment(row[10]), _moment(row[11]))


def _filters(
    message_type: str | None, handler: str | None, since: datetime | None, until: datetime | None
) -> tuple[str, list[object]]:
    """Build a WHERE clause from fixed fragments; values only ever travel as parameters."""
    clauses: list[str] = []
    params: list[object] = []
    for clause, value in (
        ("message_type = ?", message_type),
        ("handler = ?", handler),
        ("last_failed_at >= ?", None if since is None else _micros(since)),
        ("last_failed_at < ?", None if until is None else _micros(until)),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class SQLiteDeadLetterStore(SQLStore[SQLiteConnection]):
    """Keeps dead letters in a table of an SQLite file.

    Opens the file, and creates the table if needed, on first use or on ``async with``.
    Made alone (from a path) it has a connection of its own, which :meth:`aclose` (or
    leaving the ``async with``) closes; made by :meth:`SQLiteDatabase.dead_letters
    <messagebus.sqlite.SQLiteDatabase.dead_letters>` (or given the database object as
    ``path``) it shares the database's. Adding a record whose id is already stored
    replaces it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | SQLiteConnection,
        *,
        table: str = "messagebus_dead_letters",
    ) -> None:
        # First, as before: a bad path is reported first.
        database = path if isinstance(path, SQLiteConnection) else SQLiteConnection(os.fspath(path))
        self._table = check_table_name(table)
        quoted = f'"{self._table}"'
        self._insert = (
            f"INSERT OR REPLACE INTO {quoted} ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"
        )
        self._select = f"SELECT {_COLUMNS} FROM {quoted}"
        self._delete = f"DELETE FROM {quoted}"
        self._on(database, alone=database is not path)
        database.add_set_up(
            lambda connection: create_table(
                connection,
                table=self._table,
                version=SCHEMA_VERSION,
                columns=_TABLE,
                indexes=_INDEXES,
            )
        )

    async def add(self, dead_letter: DeadLetter) -> None:
        """Keep ``dead_letter``."""
        d = dead_letter
        params = (
            *(d.id, d.handler, d.message_type, d.message_id, d.correlation_id, d.body),
            *(d.error_type, d.error_message, d.traceback, d.attempts),
            *(_micros(d.first_failed_at), _micros(d.last_failed_at)),
        )
        await self._change(self._insert, params)

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """Return the record with this id, or None."""
        statement = f"{self._select} WHERE id = ?"
        row = await self._database.run(
            lambda connection: connection.execute(statement, (dead_letter_id,)).fetchone()
        )
        return None if row is None else _letter(row)

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
        where, params = _filters(message_type, handler, since, until)
        statement = f"{self._select}{where} ORDER BY last_failed_at, id LIMIT ?"
        params.append(-1 if limit is None else limit)
        rows = await self._database.run(
            lambda connection: connection.execute(statement, params).fetchall()
        )
        return tuple(_letter(row) for row in rows)

    async def delete(self, dead_letter_id: str) -> bool:
        """Remove the record with this id; return whether there was one."""
        statement = f"{self._delete} WHERE id = ?"
        count = await self._change(statement, (dead_letter_id,))
        return count > 0

    async def purge(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        until: datetime | None = None,
    ) -> int:
        """Remove every record matching the filters given; return how many went."""
        where, params = _filters(message_type, handler, None, until)
        statement = f"{self._delete}{where}"
        return await self._change(statement, params)

    async def _change(self, statement: str, params: Sequence[object]) -> int:
        """Run one write statement in its own transaction; return the rows it changed."""
        return await self._database.write(
            lambda connection: connection.execute(statement, params).rowcount
        )
