"""Idempotency records in an SQLite file, shared by every store and process that opens it.

Runs the stdlib :mod:`sqlite3` in worker threads through :func:`anyio.to_thread.run_sync`,
so it works on asyncio and trio alike, with the same connection handling as the SQLite
dead letter store: one connection per store, one thread at a time on it, the file in WAL
mode, and a writer waiting up to ``BUSY_TIMEOUT`` seconds for another's lock.

Table layout (created on first use, idempotently; ``<table>`` defaults to
``messagebus_idempotency``)::

    <table>(scope TEXT, key TEXT, fingerprint TEXT NOT NULL, token TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
            result TEXT NULL,      -- NULL while in progress
            expires_at REAL NOT NULL,
            PRIMARY KEY (scope, key))
        -- expires_at: the lease's end while in progress, the TTL's end once completed,
        -- in seconds since the Unix epoch from the store's clock; expired if <= now
    <table>_expires_ix (expires_at)   -- for cleanup()
    messagebus_schema(table_name TEXT PRIMARY KEY, version INTEGER NOT NULL)
        -- one row per table messagebus manages, for later migrations

The contract (see :class:`~messagebus.idempotency.IdempotencyStore`): a claim runs in a
``BEGIN IMMEDIATE`` transaction, which takes the file's write lock before it reads, so
claims from every connection and process take turns: of many concurrent claims of one
key exactly one is :class:`~messagebus.idempotency.Claimed`. :meth:`complete` and
:meth:`release` change the record only while it carries the caller's token.

Limits: the time is the store's ``clock``, read in the worker thread once the write lock
is held; processes sharing a file should share a clock (the default, ``time.time``, on
one host). Errors from SQLite (a lock held longer than the busy timeout, a full disk, a
read-only file) propagate as :mod:`sqlite3` exceptions, unchanged. A cancelled call still
finishes in the worker thread: a cancelled claim may have claimed the key, which then
stays in progress until its lease ends. A schema version newer than this code knows
raises :class:`RuntimeError`. Calls after :meth:`~SQLiteIdempotencyStore.aclose` raise
:class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import anyio.to_thread

from messagebus._ids import new_message_id
from messagebus.dead_letters._sql import VERSION_TABLE, check_table_name

# The connection set-up and transaction helpers of the dead letter store: one proven
# copy of the WAL switch retry and the BEGIN IMMEDIATE / ROLLBACK handling.
from messagebus.dead_letters._sqlite import BUSY_TIMEOUT, _transaction, _use_wal
from messagebus.idempotency._store import (
    Claimed,
    ClaimOutcome,
    Completed,
    InProgress,
    Mismatch,
)

__all__ = ["SQLiteIdempotencyStore"]

SCHEMA_VERSION = 1
"""The layout of the idempotency table this code writes; recorded in ``messagebus_schema``."""

_T = TypeVar("_T")


class SQLiteIdempotencyStore:
    """Keeps idempotency records in a table of an SQLite file.

    Opens the file, and creates the table if needed, on first use or on ``async with``;
    :meth:`aclose` (or leaving the ``async with``) closes the connection.

    Args:
        path: the database file; created if missing.
        table: the table's name (letters, digits and underscores, at most 48).
        clock: seconds since the Unix epoch (``time.time``); tests pass a fake. Called
            from a worker thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = "messagebus_idempotency",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = os.fspath(path)
        self._table = check_table_name(table)
        self._clock = clock
        quoted = f'"{self._table}"'
        self._select = (
            f"SELECT fingerprint, state, result, expires_at FROM {quoted} "
            "WHERE scope = ? AND key = ?"
        )
        # REPLACE: a new claim of an expired record overwrites every column of it.
        self._claim = (
            f"INSERT OR REPLACE INTO {quoted} "
            "(scope, key, fingerprint, token, state, result, expires_at) "
            "VALUES (?, ?, ?, ?, 'in_progress', NULL, ?)"
        )
        self._complete = (
            f"UPDATE {quoted} SET state = 'completed', result = ?, expires_at = ? "
            "WHERE scope = ? AND key = ? AND token = ?"
        )
        self._release = f"DELETE FROM {quoted} WHERE scope = ? AND key = ? AND token = ?"
        self._cleanup = (
            f"DELETE FROM {quoted} WHERE rowid IN "
            f"(SELECT rowid FROM {quoted} WHERE expires_at <= ? LIMIT ?)"
        )
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

    async def claim(self, scope: str, key: str, fingerprint: str, lease: float) -> ClaimOutcome:
        """Claim ``key`` in ``scope`` for ``lease`` seconds, or report who has it."""

        def claim(connection: sqlite3.Connection) -> ClaimOutcome:
            # Read and write in one BEGIN IMMEDIATE transaction: no other connection can
            # write between the SELECT and the INSERT, which makes the claim atomic.
            now = self._clock()
            row = connection.execute(self._select, (scope, key)).fetchone()
            if row is None or row[3] <= now:
                token = new_message_id()
                connection.execute(self._claim, (scope, key, fingerprint, token, now + lease))
                return Claimed(token)
            return _outcome(row, fingerprint)

        return await self._run(
            lambda connection: _transaction(connection, lambda: claim(connection))
        )

    async def complete(self, scope: str, key: str, token: str, result: str, ttl: float) -> None:
        """Record the claim's result, to be returned to duplicates for ``ttl`` seconds."""
        await self._run(
            lambda connection: _write(
                connection,
                self._complete,
                lambda: (result, self._clock() + ttl, scope, key, token),
            )
        )

    async def release(self, scope: str, key: str, token: str) -> None:
        """Delete the claim (the handler failed), so that the key can be claimed again."""
        await self._run(
            lambda connection: _write(connection, self._release, lambda: (scope, key, token))
        )

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records; return how many went.

        A negative ``limit`` raises :class:`ValueError`.
        """
        if limit < 0:
            raise ValueError(f"limit must not be negative: {limit}")
        return await self._run(
            lambda connection: _write(connection, self._cleanup, lambda: (self._clock(), limit))
        )

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


def _outcome(row: Sequence[Any], fingerprint: str) -> ClaimOutcome:
    """Map a live record (fingerprint, state, result, expires_at) to what a claim sees."""
    stored, state, result, expires_at = row
    if stored != fingerprint:
        return Mismatch(stored)
    if state == "in_progress":
        return InProgress(expires_at)
    return Completed(result)


def _write(
    connection: sqlite3.Connection, statement: str, params: Callable[[], Sequence[object]]
) -> int:
    """Run one write in its own transaction; return the rows it changed.

    ``params`` is called inside the transaction, so a time read from the clock there is
    taken with the write lock held, not before a wait for it.
    """
    return _transaction(connection, lambda: connection.execute(statement, params()).rowcount)


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
    # A rowid table (not WITHOUT ROWID): cleanup() picks its batch by rowid.
    connection.execute(
        f'CREATE TABLE IF NOT EXISTS "{table}" ('
        "scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, "
        "token TEXT NOT NULL, "
        "state TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')), "
        "result TEXT, expires_at REAL NOT NULL, PRIMARY KEY (scope, key))"
    )
    connection.execute(f'CREATE INDEX IF NOT EXISTS "{table}_expires_ix" ON "{table}" (expires_at)')
    connection.execute(
        f"INSERT OR IGNORE INTO {VERSION_TABLE} (table_name, version) VALUES (?, ?)",
        (table, SCHEMA_VERSION),
    )
