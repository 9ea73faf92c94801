"""The outbox in an SQLite file: the embedded default, shared by every process using the file.

Runs the stdlib :mod:`sqlite3` in worker threads (:mod:`messagebus._sql._sqlite`), so it
works on asyncio and trio alike. A store is on one connection, its own or the one it
shares with the other stores of its :class:`~messagebus.sqlite.SQLiteDatabase`: a unit
of work holds that connection in a ``BEGIN IMMEDIATE`` transaction for its whole block,
and the other calls on that connection (the relay's claims, ``status``, the other
stores of the database) wait in the event loop meanwhile. SQLite has one writer per
file at a time: while a unit of work is open, writers on *other* connections (a store
made alone on the file, another process) wait for it, up to ``BUSY_TIMEOUT`` (5)
seconds, then fail with :class:`sqlite3.OperationalError` ("database is locked"). So
keep units of work short, and write to the file only through the unit of work inside
one (a write on another connection would wait for the unit of work's own lock and fail
after the busy timeout). Readers on other connections are not blocked (WAL mode).

Table layout (created on first use, idempotently; ``<table>`` defaults to
``messagebus_outbox``; schema version :data:`SCHEMA_VERSION`)::

    <table>(seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- commit order, never reused
            id TEXT NOT NULL UNIQUE,                 -- the envelope's message_id
            destination_kind TEXT NOT NULL CHECK (IN ('queue', 'topic', 'local')),
            destination_name TEXT NOT NULL, body BLOB NOT NULL,
            group_key TEXT NULL, deduplication_id TEXT NULL, created_at REAL NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (IN ('pending', 'sent', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,      -- failed deliveries
            available_at REAL NOT NULL DEFAULT 0,     -- not claimable before (backoff)
            lease_owner TEXT NULL, lease_expires_at REAL NULL,
            last_error TEXT NULL, sent_at REAL NULL)
        -- times: seconds since the Unix epoch, by the store's clock
    <table>_pending_ix (status, seq), <table>_group_ix (group_key, seq),
    <table>_sent_ix (status, sent_at)
    messagebus_schema(table_name TEXT PRIMARY KEY, version INTEGER NOT NULL)

Claims run in ``BEGIN IMMEDIATE`` (the file's write lock), so claims from every
connection and process take turns: one UPDATE leases the rows it picks.

No cross-process wake-up: SQLite has no notification between connections (its
``update_hook`` sees only its own connection's writes), so this store is not a
:class:`~messagebus.outbox.CommitWatcher`. A relay delivers its own process's commits at
once (``on_commit``) and finds other processes' rows at its next poll.

Limits: processes sharing a file should share a clock (``time.time`` on one host).
Errors from SQLite propagate as :mod:`sqlite3` exceptions, unchanged. A cancelled call
still finishes in its worker thread. Calls after :meth:`~SQLiteOutbox.aclose` raise
:class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from messagebus._clock import TimeSource, wall_time
from messagebus._sql._schema import check_table_name
from messagebus._sql._sqlite import SQLiteConnection, create_table
from messagebus._sql._store import SQLStore
from messagebus.outbox._message import OutboxEntry, OutboxMessage, OutboxStatus, Status
from messagebus.outbox._sql import (
    COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    CommitListeners,
    SQLTransaction,
    check_own,
    entry,
    open_transaction,
    row,
)
from messagebus.outbox._store import CommitListener, Settlement

__all__ = ["SQLiteOutbox", "SQLiteTransaction"]

_TABLE = (
    "seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
    "destination_kind TEXT NOT NULL CHECK (destination_kind IN ('queue', 'topic', 'local')), "
    "destination_name TEXT NOT NULL, body BLOB NOT NULL, group_key TEXT, "
    "deduplication_id TEXT, created_at REAL NOT NULL, due_at REAL, "
    "status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')), "
    "attempts INTEGER NOT NULL DEFAULT 0, available_at REAL NOT NULL DEFAULT 0, "
    "lease_owner TEXT, lease_expires_at REAL, last_error TEXT, sent_at REAL"
)
_INDEXES = (
    ("pending_ix", "status, seq"),
    ("group_ix", "group_key, seq"),
    ("sent_ix", "status, sent_at"),
    ("due_ix", "status, available_at"),
)
_ONLY_IDS = "AND c.id IN (SELECT value FROM json_each(:ids))"
_OTHER_IDS = "OR (e.available_at <= :now AND e.id NOT IN (SELECT value FROM json_each(:ids)))"
# A row is claimable if pending, due and not leased, and no earlier pending row of its
# group is leased, backing off or (when claiming given ids) claimable but left out of the
# claim. A row not yet available and never tried is scheduled, not backing off: it takes
# its place in the group when due, so it holds nothing back before.
_CLAIM = """UPDATE {t} SET lease_owner = :owner, lease_expires_at = :now + :lease
WHERE seq IN (
    SELECT c.seq FROM {t} AS c
    WHERE c.status = 'pending' AND c.available_at <= :now
      AND (c.lease_expires_at IS NULL OR c.lease_expires_at <= :now) {only}
      AND (c.group_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM {t} AS e
          WHERE e.group_key = c.group_key AND e.seq < c.seq AND e.status = 'pending'
            AND (e.lease_expires_at > :now
                 OR (e.available_at > :now AND (e.due_at IS NULL OR e.attempts > 0)) {other})))
    ORDER BY c.seq LIMIT :limit)
RETURNING seq, {columns}"""
_MINE = "id = ? AND status = 'pending' AND lease_owner = ?"


class SQLiteTransaction(SQLTransaction[sqlite3.Connection, SQLiteConnection]):
    """A unit of work on an SQLite outbox; statements use ``?`` placeholders."""

    async def execute(self, statement: str, params: Sequence[object] = ()) -> int:
        """Run one statement in the transaction; return the rows it changed."""
        return await self.run(lambda connection: connection.execute(statement, params).rowcount)

    async def fetch(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one query in the transaction; return its rows as tuples."""
        return await self.run(
            lambda connection: [tuple(r) for r in connection.execute(statement, params)]
        )


class SQLiteOutbox(SQLStore[SQLiteConnection]):
    """The outbox table of an SQLite file; see the module for the layout and its limits.

    Opens the file, and creates the table if needed, on first use or on ``async with``.
    Made alone (from a path) it has a connection of its own, which :meth:`aclose` (or
    leaving the ``async with``) closes; made by :meth:`SQLiteDatabase.outbox
    <messagebus.sqlite.SQLiteDatabase.outbox>` it shares the database's (see
    :mod:`messagebus.sqlite` for who closes it).

    Args:
        path: the database file; created if missing. Or the database object to be on.
        table: the table's name (letters, digits and underscores, at most 48).
        clock: seconds since the Unix epoch (``time.time``) or a ``Clock``
            (a fake one in tests). Called from worker threads. Public as :attr:`clock`
            (a reading in seconds): scheduled messages' due times are read on it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | SQLiteConnection,
        *,
        table: str = "messagebus_outbox",
        clock: TimeSource = time.time,
    ) -> None:
        database = path if isinstance(path, SQLiteConnection) else SQLiteConnection(os.fspath(path))
        self._table = check_table_name(table)
        self._clock = self.clock = wall_time(clock)
        self._listeners = CommitListeners()
        t = f'"{self._table}"'
        self._insert = (
            f"INSERT INTO {t} (id, destination_kind, destination_name, body, group_key, "
            "deduplication_id, created_at, due_at, available_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._claim = _CLAIM.format(t=t, only="", other="", columns=COLUMNS)
        self._claim_ids = _CLAIM.format(t=t, only=_ONLY_IDS, other=_OTHER_IDS, columns=COLUMNS)
        clear = "lease_owner = NULL, lease_expires_at = NULL"
        self._sent = (
            f"UPDATE {t} SET status = 'sent', sent_at = ?, {clear} "
            "WHERE id = ? AND status = 'pending'"
        )
        self._retry = (
            f"UPDATE {t} SET attempts = attempts + 1, available_at = ?, last_error = ?, "
            f"{clear} WHERE {_MINE}"
        )
        self._dead = (
            f"UPDATE {t} SET status = 'dead', attempts = attempts + 1, last_error = ?, "
            f"{clear} WHERE {_MINE}"
        )
        self._release = f"UPDATE {t} SET {clear} WHERE {_MINE}"
        self._list = f"SELECT {COLUMNS} FROM {t} WHERE status = ? ORDER BY seq LIMIT ?"
        self._requeue = (
            f"UPDATE {t} SET status = 'pending', attempts = 0, available_at = 0, {clear} "
            "WHERE id = ? AND status = 'dead'"
        )
        # Scheduled and not due: counted apart, and no part of the oldest pending age.
        later = "(status = 'pending' AND coalesce(due_at > :now, 0) AND attempts = 0)"
        self._status = (
            "SELECT "
            f"coalesce(sum(status = 'pending' AND coalesce(lease_expires_at <= :now, 1) "
            f"AND NOT {later}), 0), "
            "coalesce(sum(status = 'pending' AND lease_expires_at > :now), 0), "
            "coalesce(sum(status = 'dead'), 0), coalesce(sum(status = 'sent'), 0), "
            f"min(CASE WHEN status = 'pending' AND NOT {later} "
            "THEN coalesce(due_at, created_at) END), "
            f"coalesce(sum({later}), 0) FROM {t}"
        )
        # Not delivered yet and not being delivered: pending, and not leased (a lease
        # that has run out belongs to a relay that died: the row is free again).
        self._cancel = (
            f"DELETE FROM {t} WHERE id = ? AND status = 'pending' AND due_at IS NOT NULL "
            "AND (lease_expires_at IS NULL OR lease_expires_at <= ?)"
        )
        self._next_due = (
            f"SELECT min(available_at) FROM {t} WHERE status = 'pending' AND available_at > ?"
        )
        self._cleanup = (
            f"DELETE FROM {t} WHERE seq IN (SELECT seq FROM {t} "
            "WHERE status = 'sent' AND sent_at <= ? LIMIT ?)"
        )
        self._on(database, alone=database is not path)
        database.add_set_up(
            lambda connection: create_table(
                connection,
                table=self._table,
                version=SCHEMA_VERSION,
                columns=_TABLE,
                indexes=_INDEXES,
                migrations=MIGRATIONS,
            )
        )

    def transaction(self) -> AbstractAsyncContextManager[SQLiteTransaction]:
        """Open a unit of work; leaving the block commits it, an exception rolls it back.

        Committed messages go to the commit listeners once the commit has succeeded.
        """
        return open_transaction(
            self._database.transaction(),
            lambda held: SQLiteTransaction(held, self._database),
            self.insert,
            self._listeners,
        )

    def insert(self, connection: sqlite3.Connection, messages: Sequence[OutboxMessage]) -> None:
        """Insert ``messages`` on your own connection to this file, in your transaction.

        For code that manages its own :mod:`sqlite3` connection (or an SQLAlchemy one:
        its driver connection): the rows commit with your transaction. Blocking; nothing
        is told to the commit listeners, so after your commit either call the relay's
        ``notify`` with the ids or let its poll find them. The table must exist (open
        the store once first).
        """
        connection.executemany(self._insert, [row(message) for message in messages])

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with the message ids of every unit of work that commits some."""
        self._listeners.add(listener)

    async def claim(
        self, owner: str, *, lease: float, limit: int, ids: Sequence[str] | None = None
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` claimable rows to ``owner`` for ``lease`` s, in commit order."""
        statement = self._claim if ids is None else self._claim_ids
        encoded = None if ids is None else json.dumps(list(ids))

        def claim(connection: sqlite3.Connection) -> list[OutboxEntry]:
            params = {"owner": owner, "now": self._clock(), "lease": lease, "limit": limit}
            if encoded is not None:
                params["ids"] = encoded
            # RETURNING gives no order: sort by seq, the commit order.
            rows = sorted(connection.execute(statement, params).fetchall())
            return [entry(r[1:]) for r in rows]

        return await self._database.write(claim)

    async def settle(self, owner: str, settlement: Settlement) -> None:
        """Record what became of rows ``owner`` claimed, in one transaction."""
        s = settlement

        def settle(connection: sqlite3.Connection) -> None:
            now = self._clock()
            connection.executemany(self._sent, [(now, i) for i in s.sent])
            connection.executemany(
                self._retry, [(now + delay, error, i, owner) for i, delay, error in s.retry]
            )
            connection.executemany(self._dead, [(error, i, owner) for i, error in s.dead])
            connection.executemany(self._release, [(i, owner) for i in s.released])

        await self._database.write(settle)

    async def list(self, status: Status = "dead", *, limit: int = 100) -> Sequence[OutboxEntry]:
        """Return up to ``limit`` rows in this state, in commit order."""
        rows = await self._database.run(
            lambda connection: connection.execute(self._list, (status, limit)).fetchall()
        )
        return [entry(r) for r in rows]

    async def requeue(self, message_id: str) -> bool:
        """Make a dead row pending again, attempts reset; return whether there was one."""
        return await self._database.write(
            lambda connection: connection.execute(self._requeue, (message_id,)).rowcount > 0
        )

    async def status(self) -> OutboxStatus:
        """Count the rows by state."""

        def status(connection: sqlite3.Connection) -> OutboxStatus:
            now = self._clock()
            pending, in_flight, dead, sent, oldest, scheduled = connection.execute(
                self._status, {"now": now}
            ).fetchone()
            age = None if oldest is None else max(0.0, now - oldest)
            return OutboxStatus(pending, in_flight, dead, sent, age, scheduled)

        return await self._database.run(status)

    async def cleanup(self, retention: float, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` rows sent more than ``retention`` s ago; return how many."""
        return await self._database.write(
            lambda connection: (
                connection.execute(self._cleanup, (self._clock() - retention, limit)).rowcount
            )
        )

    async def cancel(self, message_id: str, transaction: SQLiteTransaction | None = None) -> bool:
        """Delete a scheduled row not delivered yet; return whether there was one.

        False for an unknown id, a message not scheduled, one delivered, parked as dead,
        or being delivered right now (leased by a live relay). ``transaction``: a unit
        of work of this store to do it in (it commits or rolls back with it).
        """
        if transaction is not None:
            check_own(self._database, transaction)
            return await transaction.execute(self._cancel, (message_id, self._clock())) > 0
        return await self._database.write(
            lambda connection: (
                connection.execute(self._cancel, (message_id, self._clock())).rowcount > 0
            )
        )

    async def until_due(self) -> float | None:
        """Seconds until the next pending row becomes claimable (scheduled or backing off).

        None when no pending row waits for a time (rows claimable now do not count).
        """

        def until(connection: sqlite3.Connection) -> float | None:
            now = self._clock()
            (due,) = connection.execute(self._next_due, (now,)).fetchone()
            return None if due is None else due - now

        return await self._database.run(until)
