"""One SQLite file, one connection, and the stores on it.

:class:`SQLiteDatabase` owns one connection to one file (:mod:`messagebus._sql._sqlite`:
opened lazily in a worker thread, WAL mode, one thread at a time) and hands out the
stores on it: :meth:`~SQLiteDatabase.outbox`, :meth:`~SQLiteDatabase.idempotency`,
:meth:`~SQLiteDatabase.dead_letters`, :meth:`~SQLiteDatabase.event_log`. Stores made
from one object are on one connection, hence in one transaction when a unit of work
of its outbox is open: that is what inbox mode and the event log's appends in the
outbox's transaction need, and what they check (by identity: two objects on one file
are two connections, and refused).

Contract:

- Each store's tables are created once, lazily, before the database's next call after
  the store is made (:class:`~messagebus._sql._schema.SetUps`).
- Who closes the connection (:mod:`messagebus._sql._database`): the database is open
  while something holds it, its own ``async with`` block or a store's ``async with``
  block (the bus enters its outbox and its event log, separately); the last holder to
  let go closes it, for good. So closing one store never closes the others, and
  ``async with database:`` around the bus keeps it open for the whole block.
  :meth:`~SQLiteDatabase.aclose` closes it at once, whoever holds it.
- While a unit of work is open, every other call on the database, from any of its
  stores, waits for it in the event loop (one connection): keep units of work short,
  and inside one reach the database through the unit of work only (a store's own call
  from the task holding the unit of work fails instead of waiting for itself).
"""

from __future__ import annotations

import os
import time

from messagebus._clock import TimeSource
from messagebus._codec import WireCodec
from messagebus._sql._sqlite import SQLiteConnection
from messagebus.dead_letters._sqlite import SQLiteDeadLetterStore
from messagebus.eventlog._sqlite import SQLiteEventLog
from messagebus.idempotency._sqlite import SQLiteIdempotencyStore
from messagebus.outbox._sqlite import SQLiteOutbox
from messagebus.process._sqlite import SQLiteProcessStore

__all__ = ["SQLiteDatabase"]


class SQLiteDatabase(SQLiteConnection):
    """The SQLite file at ``path`` (created if missing), and the stores on it; see the module.

    ``async with SQLiteDatabase(path) as database:`` opens the connection and sets up
    the tables of the stores made so far; leaving the block lets go of it (closing it
    unless a store's ``async with`` still holds it).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(os.fspath(path))

    def outbox(
        self, *, table: str = "messagebus_outbox", clock: TimeSource = time.time
    ) -> SQLiteOutbox:
        """Return an outbox on this database; options as :class:`~messagebus.outbox.SQLiteOutbox`.

        Its units of work are the transactions the other stores of this database join.
        """
        return SQLiteOutbox(self, table=table, clock=clock)

    def idempotency(
        self, *, table: str = "messagebus_idempotency", clock: TimeSource = time.time
    ) -> SQLiteIdempotencyStore:
        """Return an idempotency store on this database (inbox mode works with its outbox).

        Options as :class:`~messagebus.idempotency.SQLiteIdempotencyStore`.
        """
        return SQLiteIdempotencyStore(self, table=table, clock=clock)

    def dead_letters(self, *, table: str = "messagebus_dead_letters") -> SQLiteDeadLetterStore:
        """Return a dead letter store on this database.

        Options as :class:`~messagebus.dead_letters.SQLiteDeadLetterStore`.
        """
        return SQLiteDeadLetterStore(self, table=table)

    def processes(
        self, *, table: str = "messagebus_processes", clock: TimeSource = time.time
    ) -> SQLiteProcessStore:
        """Return a process manager store on this database (its outbox's units of work).

        Options as :class:`~messagebus.process.SQLiteProcessStore`.
        """
        return SQLiteProcessStore(self, table=table, clock=clock)

    def event_log(
        self, *, codec: WireCodec | None = None, table: str = "messagebus_events"
    ) -> SQLiteEventLog:
        """Return an event log on this database (units of work of its outbox append to it).

        Options as :class:`~messagebus.eventlog.SQLiteEventLog`.
        """
        return SQLiteEventLog(self, codec=codec, table=table)
