"""Idempotency records in an SQLite file, shared by every store and process that opens it.

Runs the stdlib :mod:`sqlite3` in worker threads through :func:`anyio.to_thread.run_sync`,
so it works on asyncio and trio alike, with the same connection handling as the SQLite
dead letter store (:mod:`messagebus._sql._sqlite`): one connection per store made
alone, or the one of its :class:`~messagebus.sqlite.SQLiteDatabase`, one thread at a
time on it, the file in WAL mode, and a writer waiting up to ``BUSY_TIMEOUT`` (5)
seconds for another's lock.

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

The contract (see :class:`~messagebus.extension.IdempotencyStore`): a claim runs in a
``BEGIN IMMEDIATE`` transaction, which takes the file's write lock before it reads, so
claims from every connection and process take turns: of many concurrent claims of one
key exactly one is :class:`~messagebus.idempotency.Claimed`. :meth:`complete` and
:meth:`release` change the record only while it carries the caller's token.

Inbox mode (:class:`~messagebus.extension.InboxStore`): :meth:`claim_in` and
:meth:`complete_in` run the same statements on the caller's connection, inside its
``BEGIN IMMEDIATE`` transaction (a unit of work of the
:class:`~messagebus.outbox.SQLiteOutbox` made from the same
:class:`~messagebus.sqlite.SQLiteDatabase`), so the record commits or rolls back with
the caller's writes. The unit of work holds the file's write lock from
its start, so a duplicate (another task, another process) waits for the lock before its
own unit of work begins (up to ``BUSY_TIMEOUT`` across processes), then sees the
committed record; a killed holder's transaction is rolled back by SQLite (its lock goes
with the process), leaving no record. If the store's table has not been set up yet
when it is first used in a caller's transaction (a store made after its database
opened), :meth:`claim_in` creates it there, committed with the transaction.

Limits: the time is the store's ``clock``, read in the worker thread once the write lock
is held; processes sharing a file should share a clock (the default, ``time.time``, on
one host). Errors from SQLite (a lock held longer than the busy timeout, a full disk, a
read-only file) propagate as :mod:`sqlite3` exceptions, unchanged. A cancelled call still
finishes in the worker thread: a cancelled claim may have claimed the key, which then
stays in progress until its lease ends. A schema version newer than this code knows
raises :class:`~messagebus.SchemaVersionError`. Calls after
:meth:`~SQLiteIdempotencyStore.aclose` raise :class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from messagebus._clock import TimeSource, wall_time
from messagebus._errors import InvalidArgumentError
from messagebus._ids import new_message_id
from messagebus._sql._schema import check_table_name
from messagebus._sql._sqlite import SQLiteConnection, create_table
from messagebus._sql._store import SQLStore
from messagebus.idempotency._store import Claimed, ClaimOutcome, live_outcome

__all__ = ["SQLiteIdempotencyStore"]

SCHEMA_VERSION = 1
"""The layout of the idempotency table this code writes; recorded in ``messagebus_schema``."""

# A rowid table (not WITHOUT ROWID): cleanup() picks its batch by rowid.
_TABLE = (
    "scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, "
    "token TEXT NOT NULL, "
    "state TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')), "
    "result TEXT, expires_at REAL NOT NULL, PRIMARY KEY (scope, key)"
)


class SQLiteIdempotencyStore(SQLStore[SQLiteConnection]):
    """Keeps idempotency records in a table of an SQLite file.

    Opens the file, and creates the table if needed, on first use or on ``async with``.
    Made alone (from a path) it has a connection of its own, which :meth:`aclose` (or
    leaving the ``async with``) closes; made by :meth:`SQLiteDatabase.idempotency
    <messagebus.sqlite.SQLiteDatabase.idempotency>` it shares the database's.

    Args:
        path: the database file; created if missing. Or the database object to be on.
        table: the table's name (letters, digits and underscores, at most 48).
        clock: seconds since the Unix epoch (``time.time``) or a ``Clock``
            (a fake one in tests). Called from a worker thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | SQLiteConnection,
        *,
        table: str = "messagebus_idempotency",
        clock: TimeSource = time.time,
    ) -> None:
        # First, as before: a bad path is reported first.
        database = path if isinstance(path, SQLiteConnection) else SQLiteConnection(os.fspath(path))
        self._table = check_table_name(table)
        self._clock = wall_time(clock)
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
        self._on(database, alone=database is not path)
        # One object, so that SetUps.pending() recognises it.
        self._set_up = self._create_table
        database.add_set_up(self._set_up)

    def _create_table(self, connection: sqlite3.Connection) -> None:
        create_table(
            connection,
            table=self._table,
            version=SCHEMA_VERSION,
            columns=_TABLE,
            indexes=[("expires_ix", "expires_at")],
        )

    async def claim(self, scope: str, key: str, fingerprint: str, lease: float) -> ClaimOutcome:
        """Claim ``key`` in ``scope`` for ``lease`` seconds, or report who has it."""
        # In a BEGIN IMMEDIATE transaction of its own, which claim_in needs.
        return await self._database.write(
            lambda connection: self.claim_in(connection, scope, key, fingerprint, lease)
        )

    def claim_in(
        self,
        connection: sqlite3.Connection,
        scope: str,
        key: str,
        fingerprint: str,
        lease: float,
        *,
        wait: float | None = None,
    ) -> ClaimOutcome:
        """Claim ``key`` like :meth:`claim`, in the caller's transaction on ``connection``.

        Blocking. ``connection`` must be in a ``BEGIN IMMEDIATE`` transaction on this
        store's database (a unit of work's): holding the write lock, it never waits here,
        so ``wait`` is ignored (duplicates waited for the lock when their transaction
        began). Creates the table there first if it has not been set up yet.
        """
        if self._database.set_ups.pending(self._set_up):
            # Made after its database opened, first used in a transaction (which holds
            # the connection the database would set it up on).
            self._set_up(connection)
        # Read and write under the write lock: no other connection can write between the
        # SELECT and the INSERT, which makes the claim atomic.
        now = self._clock()
        row = connection.execute(self._select, (scope, key)).fetchone()
        if row is None or row[3] <= now:
            token = new_message_id()
            connection.execute(self._claim, (scope, key, fingerprint, token, now + lease))
            return Claimed(token)
        return _outcome(row, fingerprint)

    async def complete(self, scope: str, key: str, token: str, result: str, ttl: float) -> None:
        """Record the claim's result, to be returned to duplicates for ``ttl`` seconds."""
        await self._change(self._complete, lambda: (result, self._clock() + ttl, scope, key, token))

    def complete_in(
        self,
        connection: sqlite3.Connection,
        scope: str,
        key: str,
        token: str,
        result: str,
        *,
        ttl: float,
    ) -> None:
        """Record the claim's result like :meth:`complete`, in the caller's transaction."""
        connection.execute(self._complete, (result, self._clock() + ttl, scope, key, token))

    async def release(self, scope: str, key: str, token: str) -> None:
        """Delete the claim (the handler failed), so that the key can be claimed again."""
        await self._change(self._release, lambda: (scope, key, token))

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records; return how many went.

        A negative ``limit`` raises :class:`~messagebus.InvalidArgumentError`.
        """
        if limit < 0:
            raise InvalidArgumentError(f"limit must not be negative: {limit}")
        return await self._change(self._cleanup, lambda: (self._clock(), limit))

    async def _change(self, statement: str, params: Callable[[], Sequence[object]]) -> int:
        """Run one write in its own transaction; return the rows it changed.

        ``params`` is called inside the transaction, so a time read from the clock there is
        taken with the write lock held, not before a wait for it.
        """
        return await self._database.write(
            lambda connection: connection.execute(statement, params()).rowcount
        )


def _outcome(row: Sequence[Any], fingerprint: str) -> ClaimOutcome:
    """Map a live record (fingerprint, state, result, expires_at) to what a claim sees."""
    stored, state, result, expires_at = row
    return live_outcome(fingerprint, stored, None if state == "in_progress" else result, expires_at)
