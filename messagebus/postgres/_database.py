"""One PostgreSQL database, one connection pool, and the stores on it.

:class:`PostgresDatabase` owns one pool (:mod:`messagebus._sql._postgres`: psycopg's
sync API in worker threads, so it runs on asyncio and trio) and hands out the stores
on it: :meth:`~PostgresDatabase.outbox`, :meth:`~PostgresDatabase.idempotency`,
:meth:`~PostgresDatabase.dead_letters`, :meth:`~PostgresDatabase.event_log`. Stores made
from one object share its pool, so a unit of work of its outbox is a transaction the
others can join: that is what inbox mode and the event log's appends in the outbox's
transaction need, and what they check (by identity: two objects on one DSN are two
pools, and refused).

Contract:

- Given a DSN, the database makes its pool (one to ``max_size`` connections, four by
  default, for all its stores together), opened by the first call; given an open
  :class:`psycopg_pool.ConnectionPool` of yours, it borrows connections from it and
  never opens or closes it.
- Each store's tables are created once, lazily, before the database's next call after
  the store is made (:class:`~messagebus._sql._schema.SetUps`), in ``schema`` (the
  database's, unless the store is given its own; None: the search path's first).
- Who closes the pool (:mod:`messagebus._sql._database`): the database is open while
  something holds it, its own ``async with`` block or a store's ``async with`` block
  (the bus enters its outbox and its event log, separately); the last holder to let go
  closes an owned pool, for good. So closing one store never closes the others.
  :meth:`~PostgresDatabase.aclose` closes it at once, whoever holds it.
- A unit of work holds one pooled connection until it ends: with ``max_size``
  units of work open, the stores' other calls wait for one to end.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from messagebus._clock import TimeSource
from messagebus._codec import WireCodec
from messagebus._sql._postgres import PostgresPool
from messagebus.dead_letters._postgres import PostgresDeadLetterStore
from messagebus.eventlog._postgres import PostgresEventLog
from messagebus.idempotency._postgres import PostgresIdempotencyStore
from messagebus.outbox._postgres import PostgresOutbox
from messagebus.process._postgres import PostgresProcessStore

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresDatabase"]


class PostgresDatabase(PostgresPool):
    """A PostgreSQL database reached through one pool, and the stores on it; see the module.

    Args:
        dsn_or_pool: a connection string (the database makes its own pool) or an open
            :class:`psycopg_pool.ConnectionPool` to borrow from.
        schema: the schema of the stores' tables (it must exist); None for the first
            schema of the search path. A store may be given another.
        max_size: the most connections of a pool made from a DSN.
    """

    def __init__(
        self,
        dsn_or_pool: str | ConnectionPool[Any],
        *,
        schema: str | None = None,
        max_size: int = 4,
    ) -> None:
        super().__init__(dsn_or_pool, name="messagebus", max_size=max_size)
        self.schema = schema
        """The schema the stores' tables go in, unless a store is given its own."""

    def outbox(
        self,
        *,
        table: str = "messagebus_outbox",
        schema: str | None = None,
        clock: TimeSource = time.time,
        notify: bool = True,
    ) -> PostgresOutbox:
        """Return an outbox on this database; options as :class:`~messagebus.outbox.PostgresOutbox`.

        Its units of work are the transactions the other stores of this database join.
        """
        return PostgresOutbox(
            self, table=table, schema=schema or self.schema, clock=clock, notify=notify
        )

    def idempotency(
        self,
        *,
        table: str = "messagebus_idempotency",
        schema: str | None = None,
        clock: TimeSource | None = None,
    ) -> PostgresIdempotencyStore:
        """Return an idempotency store on this database (inbox mode works with its outbox).

        Options as :class:`~messagebus.idempotency.PostgresIdempotencyStore`.
        """
        return PostgresIdempotencyStore(
            self, table=table, schema=schema or self.schema, clock=clock
        )

    def dead_letters(
        self, *, table: str = "messagebus_dead_letters", schema: str | None = None
    ) -> PostgresDeadLetterStore:
        """Return a dead letter store on this database.

        Options as :class:`~messagebus.dead_letters.PostgresDeadLetterStore`.
        """
        return PostgresDeadLetterStore(self, table=table, schema=schema or self.schema)

    def processes(
        self,
        *,
        table: str = "messagebus_processes",
        schema: str | None = None,
        clock: TimeSource = time.time,
    ) -> PostgresProcessStore:
        """Return a process manager store on this database (its outbox's units of work).

        Options as :class:`~messagebus.process.PostgresProcessStore`.
        """
        return PostgresProcessStore(self, table=table, schema=schema or self.schema, clock=clock)

    def event_log(
        self,
        *,
        codec: WireCodec | None = None,
        table: str = "messagebus_events",
        schema: str | None = None,
    ) -> PostgresEventLog:
        """Return an event log on this database (units of work of its outbox append to it).

        Options as :class:`~messagebus.eventlog.PostgresEventLog`.
        """
        return PostgresEventLog(self, codec=codec, table=table, schema=schema or self.schema)
