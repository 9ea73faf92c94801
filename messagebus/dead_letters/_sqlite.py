"""Dead letters in an SQLite file, shared by every store and process that opens it.

Runs the stdlib :mod:`sqlite3` in worker threads through :func:`anyio.to_thread.run_sync`,
so it works on asyncio and trio alike. Each store holds one connection and lets one
thread at a time use it; concurrent calls on one store queue in the event loop. Several
stores or processes may write one file at once: the file is in WAL mode, and a writer
waits up to :data:`BUSY_TIMEOUT` seconds for another's lock before ``sqlite3`` raises.

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
timezone-aware (naive ones raise :class:`ValueError`). A cancelled call still finishes
its statement in the worker thread before the cancellation takes effect. A schema
version newer than this code knows raises :class:`RuntimeError`. Calls after
:meth:`~SQLiteDeadLetterStore.aclose` raise :class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import anyio.to_thread

from messagebus.dead_letters._record import DeadLetter
from messagebus.dead_letters._sql import SCHEMA_VERSION, VERSION_TABLE, check_table_name, record

__all__ = ["BUSY_TIMEOUT", "SQLiteDeadLetterStore"]

BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another connection's lock on the file."""

_T = TypeVar("_T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_COLUMNS = (
    "id, handler, message_type, message_id, correlation_id, body, error_type, "
    "error_message, traceback, attempts, first_failed_at, last_failed_at"
)


def _micros(moment: datetime) -> int:
    if moment.utcoffset() is None:
        raise ValueError(f"dead letter times must be timezone-aware: {moment!r}")
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


class SQLiteDeadLetterStore:
    """Keeps dead letters in a table of an SQLite file.

    Opens the file, and creates the table if needed, on first use or on ``async with``;
    :meth:`aclose` (or leaving the ``async with``) closes the connection. Adding a record
    whose id is already stored replaces it.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, table: str = "messagebus_dead_letters"
    ) -> None:
        self._path = os.fspath(path)
        self._table = check_table_name(table)
        quoted = f'"{self._table}"'
        self._insert = (
            f"INSERT OR REPLACE INTO {quoted} ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"
        )
        self._select = f"SELECT {_COLUMNS} FROM {quoted}"
        self._delete = f"DELETE FROM {quoted}"
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        # One thread at a time on the connection: sqlite3 connections are not re-entrant.
        self._limiter = anyio.CapacityLimiter(1)

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
        """Close the connection once pending calls finish; later calls raise."""
        self._closed = True
        # Shielded: a cancelled close would leak the connection and its file handles.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close, limiter=self._limiter)

    async def add(self, dead_letter: DeadLetter) -> None:
        """Keep ``dead_letter``."""
        d = dead_letter
        params = (
            *(d.id, d.handler, d.message_type, d.message_id, d.correlation_id, d.body),
            *(d.error_type, d.error_message, d.traceback, d.attempts),
            *(_micros(d.first_failed_at), _micros(d.last_failed_at)),
        )
        await self._run(lambda connection: _write(connection, self._insert, params))

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """Return the record with this id, or None."""
        statement = f"{self._select} WHERE id = ?"
        row = await self._run(
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
        A negative ``limit`` raises :class:`ValueError`.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative: {limit}")
        where, params = _filters(message_type, handler, since, until)
        statement = f"{self._select}{where} ORDER BY last_failed_at, id LIMIT ?"
        params.append(-1 if limit is None else limit)
        rows = await self._run(lambda connection: connection.execute(statement, params).fetchall())
        return tuple(_letter(row) for row in rows)

    async def delete(self, dead_letter_id: str) -> bool:
        """Remove the record with this id; return whether there was one."""
        statement = f"{self._delete} WHERE id = ?"
        count = await self._run(lambda connection: _write(connection, statement, (dead_letter_id,)))
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
        return await self._run(lambda connection: _write(connection, statement, params))

    async def _run(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise anyio.ClosedResourceError
        return await anyio.to_thread.run_sync(self._call, call, limiter=self._limiter)

    def _call(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        # Checked again in the thread: aclose() may have run while this call queued.
        if self._closed:
            raise anyio.ClosedResourceError
        if self._connection is None:
            self._connection = _connect(self._path, self._table)
        return call(self._connection)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _connect(path: str, table: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; _transaction takes the write
    # lock up front with BEGIN IMMEDIATE, where the busy timeout applies.
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        _use_wal(connection)
        # FULL: a commit survives power loss in WAL mode too (NORMAL would not promise it).
        connection.execute("PRAGMA synchronous = FULL")
        _transaction(connection, lambda: _create_schema(connection, table))
    except BaseException:
        connection.close()
        raise
    return connection


def _use_wal(connection: sqlite3.Connection) -> None:
    # Switching a new file to WAL takes an exclusive lock, and when other connections
    # are opening the file too SQLite fails at once with SQLITE_BUSY instead of calling
    # the busy handler; so wait here, as the busy timeout would (0xFF: any BUSY_* code).
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
        else:
            return


def _create_schema(connection: sqlite3.Connection, table: str) -> None:
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
        "(table_name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL)"
    )
    row = connection.execute(
        f"SELECT version FROM {VERSION_TABLE} WHERE table_name = ?", (table,)
    ).fetchone()
    if row is not None and row[0] > SCHEMA_VERSION:
        raise RuntimeError(
            f"table {table!r} has schema version {row[0]}; this messagebus knows "
            f"up to {SCHEMA_VERSION}: upgrade messagebus"
        )
    connection.execute(
        f'CREATE TABLE IF NOT EXISTS "{table}" ('
        "id TEXT PRIMARY KEY NOT NULL, handler TEXT NOT NULL, message_type TEXT NOT NULL, "
        "message_id TEXT NOT NULL, correlation_id TEXT NOT NULL, body TEXT NOT NULL, "
        "error_type TEXT NOT NULL, error_message TEXT NOT NULL, traceback TEXT NOT NULL, "
        "attempts INTEGER NOT NULL, first_failed_at INTEGER NOT NULL, "
        "last_failed_at INTEGER NOT NULL)"
    )
    for suffix, columns in (
        ("type_ix", "message_type"),
        ("handler_ix", "handler"),
        ("failed_ix", "last_failed_at, id"),
    ):
        connection.execute(
            f'CREATE INDEX IF NOT EXISTS "{table}_{suffix}" ON "{table}" ({columns})'
        )
    connection.execute(
        f"INSERT OR IGNORE INTO {VERSION_TABLE} (table_name, version) VALUES (?, ?)",
        (table, SCHEMA_VERSION),
    )


def _write(connection: sqlite3.Connection, statement: str, params: Sequence[object]) -> int:
    """Run one write statement in its own transaction; return the rows it changed."""
    return _transaction(connection, lambda: connection.execute(statement, params).rowcount)


def _transaction(connection: sqlite3.Connection, work: Callable[[], _T]) -> _T:
    # IMMEDIATE takes the write lock before reading, so a concurrent writer makes this
    # wait (busy timeout) instead of failing with SQLITE_BUSY on a stale snapshot.
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        connection.execute("COMMIT")
    except BaseException:
        # Some errors (a full disk, an interrupted statement) end the transaction
        # already, and a failing ROLLBACK must not hide them.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result
