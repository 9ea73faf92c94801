"""One SQLite connection used from worker threads, for the SQLite stores.

:class:`SQLiteConnection` runs the stdlib :mod:`sqlite3` through
:func:`anyio.to_thread.run_sync`, so it works on asyncio and trio alike. It is a
:class:`~._database.SharedDatabase`: every store made on one object shares its one
connection (and its transactions). Contract:

- One connection per object, opened lazily by the first call (in a worker thread), and
  one thread at a time on it; concurrent calls, from every store on it, queue in the
  event loop.
- On opening, the file is switched to WAL mode (retrying while other connections hold
  it, up to :data:`BUSY_TIMEOUT`) and ``synchronous`` is set to FULL; if that fails the
  connection is closed and the error propagates (the next call tries again).
- Before each call, the stores' pending table set-ups (:meth:`~SQLiteConnection.add_set_up`,
  :class:`~._schema.SetUps`) run, each in a ``BEGIN IMMEDIATE`` transaction of its own.
- :meth:`~SQLiteConnection.run` gives the connection to a function in autocommit mode;
  :meth:`~SQLiteConnection.write` runs the function in a ``BEGIN IMMEDIATE`` transaction,
  committed if it returns and rolled back if it raises. Writers from other connections
  and processes wait up to :data:`BUSY_TIMEOUT` seconds for the file's write lock.
- :meth:`~SQLiteConnection.transaction` holds the connection for one ``BEGIN IMMEDIATE``
  transaction spanning several calls (a :class:`~._transaction.HeldTransaction`), and
  commits when the block is left normally, or rolls back if it raises; meanwhile other
  calls on this object wait in the event loop, and writers on other connections wait
  for the file's write lock (busy timeout), so keep it short.
- :meth:`~SQLiteConnection.aclose` closes the connection once pending calls finish;
  calls after it raise :class:`anyio.ClosedResourceError`. It may be called repeatedly.
- A cancelled call still finishes in its worker thread; errors from SQLite propagate as
  :mod:`sqlite3` exceptions, unchanged.

:func:`create_table` is a ``set_up`` building block: a table with its indexes and its
version row, refusing a newer recorded version.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import anyio.to_thread

from messagebus._sql._database import SharedDatabase
from messagebus._sql._schema import VERSION_TABLE, SetUps, check_version
from messagebus._sql._transaction import HeldTransaction

__all__ = ["BUSY_TIMEOUT", "SQLiteConnection", "create_table"]

BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another connection's lock on the file."""

_T = TypeVar("_T")


class SQLiteConnection(SharedDatabase):
    """One lazily opened connection to the SQLite file at ``path``; see the module."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self.set_ups: SetUps[sqlite3.Connection] = SetUps()
        """The stores' table set-ups; see :class:`~._schema.SetUps`."""
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        # One thread at a time on the connection: sqlite3 connections are not re-entrant.
        # A Lock, not CapacityLimiter(1): the lock hands itself to the next waiter on
        # release, while anyio's asyncio CapacityLimiter before 4.14.2 let a newcomer take
        # a token already promised to a waking waiter (anyio#1170), putting two threads,
        # and a second BEGIN, on this one connection.
        self._lock = anyio.Lock()

    def add_set_up(self, set_up: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``set_up`` (a store's tables) once, in a transaction, before the next call."""
        self.set_ups.add(set_up)

    async def open(self) -> None:
        """Open the connection and set up the pending tables now, if not done yet."""
        await self.run(lambda connection: None)

    async def run(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        """Return ``call(connection)``, run in a worker thread, outside any transaction."""
        if self._closed:
            raise anyio.ClosedResourceError
        async with self._lock:
            return await anyio.to_thread.run_sync(self._call, call)

    async def write(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        """Return ``call(connection)``, run in its own ``BEGIN IMMEDIATE`` transaction."""
        return await self.run(lambda connection: _transaction(connection, call))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[HeldTransaction[sqlite3.Connection]]:
        """Hold the connection in a ``BEGIN IMMEDIATE`` transaction for the block."""
        if self._closed:
            raise anyio.ClosedResourceError
        # The lock is held by this task for the whole block: no other call can use the
        # connection (its statements would join this transaction).
        async with self._lock:
            connection = await anyio.to_thread.run_sync(self._call, _begin)
            held = HeldTransaction(connection)
            try:
                yield held
            except BaseException:
                await held.end(_rollback)
                raise
            await held.end(_commit)

    async def aclose(self) -> None:
        """Close the connection once pending calls finish; later calls raise."""
        self._closed = True
        # Shielded: a cancelled close would leak the connection and its file handles.
        with anyio.CancelScope(shield=True):
            async with self._lock:
                await anyio.to_thread.run_sync(self._close)

    def _call(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        # Checked again in the thread: aclose() may have run while this call queued.
        if self._closed:
            raise anyio.ClosedResourceError
        connection = self._connection
        if connection is None:
            connection = self._connection = self._connect()
        if self.set_ups:
            self.set_ups.run(lambda set_up: _transaction(connection, set_up))
        return call(connection)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; _transaction takes the write
        # lock up front with BEGIN IMMEDIATE, where the busy timeout applies.
        connection = sqlite3.connect(
            self._path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            _use_wal(connection)
            # FULL: a commit survives power loss in WAL mode too (NORMAL would not promise it).
            connection.execute("PRAGMA synchronous = FULL")
        except BaseException:
            connection.close()
            raise
        return connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def create_table(
    connection: sqlite3.Connection,
    *,
    table: str,
    version: int,
    columns: str,
    indexes: Sequence[tuple[str, str]] = (),
    migrations: Mapping[int, Sequence[str]] | None = None,
) -> None:
    """Create ``table`` and its indexes if missing, and record its ``version``.

    ``columns`` is the body of ``CREATE TABLE "<table>" (...)``; each index is a name
    suffix and its column list, made as ``"<table>_<suffix>"``. A table recorded at an
    older version is brought to ``version`` first: ``migrations[n]`` are the statements
    (``{t}`` is the quoted table) taking version ``n`` to ``n + 1``. Raises
    :class:`~messagebus.SchemaVersionError`, creating nothing, if the table's recorded
    version is newer than ``version``. Meant for ``set_up``, so it runs in the set-up
    transaction (a migration commits or rolls back whole).
    """
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
        "(table_name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL)"
    )
    row = connection.execute(
        f"SELECT version FROM {VERSION_TABLE} WHERE table_name = ?", (table,)
    ).fetchone()
    found = None if row is None else int(row[0])
    check_version(table, found, version)
    connection.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({columns})')
    if found is not None and found < version:
        for step in range(found, version):
            for statement in (migrations or {}).get(step, ()):
                connection.execute(statement.format(t=f'"{table}"'))
        connection.execute(
            f"UPDATE {VERSION_TABLE} SET version = ? WHERE table_name = ?", (version, table)
        )
    for suffix, indexed in indexes:
        connection.execute(
            f'CREATE INDEX IF NOT EXISTS "{table}_{suffix}" ON "{table}" ({indexed})'
        )
    connection.execute(
        f"INSERT OR IGNORE INTO {VERSION_TABLE} (table_name, version) VALUES (?, ?)",
        (table, version),
    )


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


def _begin(connection: sqlite3.Connection) -> sqlite3.Connection:
    connection.execute("BEGIN IMMEDIATE")
    return connection


def _commit(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("COMMIT")
    except BaseException:
        _rollback(connection)
        raise


def _rollback(connection: sqlite3.Connection) -> None:
    # Some errors (a full disk, an interrupted statement) end the transaction already.
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _transaction(connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    # IMMEDIATE takes the write lock before reading, so a concurrent writer makes this
    # wait (busy timeout) instead of failing with SQLITE_BUSY on a stale snapshot.
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
        connection.execute("COMMIT")
    except BaseException:
        # Some errors (a full disk, an interrupted statement) end the transaction
        # already, and a failing ROLLBACK must not hide them.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result
