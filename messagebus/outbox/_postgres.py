"""The outbox in a PostgreSQL table: the production choice, shared by every process.

Uses psycopg 3's *sync* API and a :class:`psycopg_pool.ConnectionPool` in worker threads
(:mod:`messagebus._sql._postgres`): psycopg's async API runs on asyncio only, and the
outbox must run on trio too. Needs the ``anyio-messagebus[postgres]`` extra. A unit of work
holds one pooled connection in a transaction for its whole block (a pool made from a
DSN has four connections by default: at most four units of work and store calls at
once per pool, which the stores of one :class:`~messagebus.postgres.PostgresDatabase`
share; the others wait in the event loop).

Table layout (created on first use, idempotently, in ``schema`` or else the first
schema of the search path; ``<table>`` defaults to ``messagebus_outbox``; schema
version :data:`SCHEMA_VERSION`)::

    <table>(seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insert order
            id text COLLATE "C" NOT NULL UNIQUE,      -- the envelope's message_id
            destination_kind text NOT NULL CHECK (IN ('queue', 'topic', 'local')),
            destination_name text NOT NULL, body bytea NOT NULL,
            group_key text NULL, deduplication_id text NULL,
            created_at double precision NOT NULL,
            status text NOT NULL DEFAULT 'pending' CHECK (IN ('pending', 'sent', 'dead')),
            attempts integer NOT NULL DEFAULT 0,
            available_at double precision NOT NULL DEFAULT 0,
            lease_owner text NULL, lease_expires_at double precision NULL,
            last_error text NULL, sent_at double precision NULL)
        -- times: seconds since the Unix epoch, by the store's clock
    <table>_pending_ix (status, seq), <table>_group_ix (group_key, seq),
    <table>_sent_ix (status, sent_at)
    messagebus_schema(table_name text PRIMARY KEY, version integer NOT NULL)

Claims: a transaction takes an advisory lock for the table (claims take turns, which
the per-group order needs: two claims in parallel could each see the other's rows still
unleased) and leases the rows it picks with one ``UPDATE ... WHERE seq IN (SELECT ...
FOR UPDATE SKIP LOCKED)``, skipping rows another transaction is settling. The units of
work insert their rows just before committing, so ``seq`` order is commit order except
between units of work committing at the same instant.

Cross-process wake-up (``notify=True``, the default): each unit of work that adds rows,
and :meth:`~PostgresOutbox.insert` on your own connection, also runs ``SELECT
pg_notify(<channel>, ...)`` in its transaction, and :meth:`~PostgresOutbox.watch_commits`
(which :meth:`OutboxRelay.run <messagebus.outbox.OutboxRelay.run>` runs) LISTENs on a
dedicated connection, so a relay in another process delivers a few milliseconds after
the commit instead of at its next poll; the poll stays, as the safety net for a lost
notification or a dropped listener (see :mod:`messagebus.outbox._notify`). The
channel: :func:`~messagebus.outbox._notify.channel_name` of the schema and table.

Limits: processes sharing a table should share a clock (``time.time`` on NTP-synced
hosts: leases are tens of seconds). Errors from PostgreSQL or the pool propagate as
psycopg / psycopg_pool exceptions, unchanged. The schema must exist already. Calls after
:meth:`~PostgresOutbox.aclose` raise :class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from messagebus._clock import TimeSource, wall_time
from messagebus._ids import new_message_id
from messagebus._sql._postgres import PostgresPool, create_table, qualified
from messagebus._sql._schema import check_table_name
from messagebus._sql._store import SQLStore
from messagebus.outbox._message import OutboxEntry, OutboxMessage, OutboxStatus, Status
from messagebus.outbox._notify import CommitWatch, channel_name
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

if TYPE_CHECKING:
    from psycopg import Connection, sql
    from psycopg_pool import ConnectionPool

# psycopg is imported inside the functions below (hence the PLC0415 waivers): it is an
# optional extra, and importing messagebus must work without it.

__all__ = ["PostgresOutbox", "PostgresTransaction"]

_TABLE = """CREATE TABLE IF NOT EXISTS {t} (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    destination_kind text NOT NULL CHECK (destination_kind IN ('queue', 'topic', 'local')),
    destination_name text NOT NULL,
    body bytea NOT NULL,
    group_key text,
    deduplication_id text,
    created_at double precision NOT NULL,
    due_at double precision,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    available_at double precision NOT NULL DEFAULT 0,
    lease_owner text,
    lease_expires_at double precision,
    last_error text,
    sent_at double precision
)"""
_INDEXES = (
    ("pending_ix", "status, seq"),
    ("group_ix", "group_key, seq"),
    ("sent_ix", "status, sent_at"),
    ("due_ix", "status, available_at"),
)
_ONLY_IDS = "AND c.id = ANY(%(ids)s)"
_OTHER_IDS = "OR (e.available_at <= %(now)s AND e.id <> ALL(%(ids)s))"
# See the SQLite store: the same rule for a claimable row (scheduled rows not due hold
# nothing back).
_CLAIM = """UPDATE {{t}} SET lease_owner = %(owner)s, lease_expires_at = %(now)s + %(lease)s
WHERE seq IN (
    SELECT c.seq FROM {{t}} AS c
    WHERE c.status = 'pending' AND c.available_at <= %(now)s
      AND (c.lease_expires_at IS NULL OR c.lease_expires_at <= %(now)s) {only}
      AND (c.group_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM {{t}} AS e
          WHERE e.group_key = c.group_key AND e.seq < c.seq AND e.status = 'pending'
            AND (e.lease_expires_at > %(now)s
                 OR (e.available_at > %(now)s AND (e.due_at IS NULL OR e.attempts > 0))
                 {other})))
    ORDER BY c.seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING seq, {columns}"""
_LATER = "(status = 'pending' AND coalesce(due_at > %(now)s, false) AND attempts = 0)"
_CLEAR = "lease_owner = NULL, lease_expires_at = NULL"
_MINE = "id = %s AND status = 'pending' AND lease_owner = %s"
_STATEMENTS = {
    "insert": "INSERT INTO {t} (id, destination_kind, destination_name, body, group_key, "
    "deduplication_id, created_at, due_at, available_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
    "claim": _CLAIM.format(only="", other="", columns=COLUMNS),
    "claim_ids": _CLAIM.format(only=_ONLY_IDS, other=_OTHER_IDS, columns=COLUMNS),
    "sent": f"UPDATE {{t}} SET status = 'sent', sent_at = %s, {_CLEAR} "
    "WHERE id = ANY(%s) AND status = 'pending'",
    "retry": "UPDATE {t} SET attempts = attempts + 1, available_at = %s, last_error = %s, "
    f"{_CLEAR} WHERE {_MINE}",
    "dead": "UPDATE {t} SET status = 'dead', attempts = attempts + 1, last_error = %s, "
    f"{_CLEAR} WHERE {_MINE}",
    "release": f"UPDATE {{t}} SET {_CLEAR} WHERE {_MINE}",
    "list": f"SELECT {COLUMNS} FROM {{t}} WHERE status = %s ORDER BY seq LIMIT %s",
    "requeue": f"UPDATE {{t}} SET status = 'pending', attempts = 0, available_at = 0, {_CLEAR} "
    "WHERE id = %s AND status = 'dead'",
    # Scheduled and not due (_LATER): counted apart, and no part of the oldest age.
    "status": "SELECT "
    "count(*) FILTER (WHERE status = 'pending' AND coalesce(lease_expires_at <= %(now)s, true) "
    f"AND NOT {_LATER}), "
    "count(*) FILTER (WHERE status = 'pending' AND lease_expires_at > %(now)s), "
    "count(*) FILTER (WHERE status = 'dead'), count(*) FILTER (WHERE status = 'sent'), "
    f"min(coalesce(due_at, created_at)) FILTER (WHERE status = 'pending' AND NOT {_LATER}), "
    f"count(*) FILTER (WHERE {_LATER}) FROM {{t}}",
    # Not delivered and not being delivered (an expired lease is a dead relay's).
    "cancel": "DELETE FROM {t} WHERE id = %s AND status = 'pending' AND due_at IS NOT NULL "
    "AND (lease_expires_at IS NULL OR lease_expires_at <= %s)",
    "next_due": "SELECT min(available_at) FROM {t} WHERE status = 'pending' AND available_at > %s",
    "notify": "SELECT pg_notify(%s, %s)",
    "cleanup": "DELETE FROM {t} WHERE seq IN (SELECT seq FROM {t} "
    "WHERE status = 'sent' AND sent_at <= %s LIMIT %s FOR UPDATE SKIP LOCKED)",
}


class PostgresTransaction(SQLTransaction["Connection[Any]", PostgresPool]):
    """A unit of work on a PostgreSQL outbox; statements use ``%s`` placeholders."""

    async def execute(
        self, statement: str | sql.SQL | sql.Composed, params: Sequence[object] = ()
    ) -> int:
        """Run one statement in the transaction; return the rows it changed."""
        return await self.run(lambda connection: connection.execute(statement, params).rowcount)

    async def fetch(
        self, statement: str | sql.SQL | sql.Composed, params: Sequence[object] = ()
    ) -> list[tuple[Any, ...]]:
        """Run one query in the transaction; return its rows as tuples."""
        from psycopg.rows import tuple_row  # noqa: PLC0415

        def fetch(connection: Connection[Any]) -> list[tuple[Any, ...]]:
            # tuple_row: a borrowed pool may hand out connections with another row factory.
            with connection.cursor(row_factory=tuple_row) as cursor:
                return cursor.execute(statement, params).fetchall()

        return await self.run(fetch)


class PostgresOutbox(SQLStore[PostgresPool]):
    """The outbox table in PostgreSQL; see the module for the layout and its limits.

    ``dsn_or_pool`` is a connection string, for which the store makes its own pool (one
    to four connections), opened on first use or on ``async with`` and closed by
    :meth:`aclose`; or an open :class:`psycopg_pool.ConnectionPool` of yours, which the
    store borrows connections from and never opens or closes (so your code and the
    outbox share connections and settings); or the database object to be on, whose pool
    it shares (:meth:`PostgresDatabase.outbox
    <messagebus.postgres.PostgresDatabase.outbox>` says the same).

    Args:
        dsn_or_pool: as above.
        table: the table's name (letters, digits and underscores, at most 48).
        schema: the schema holding the table; None for the search path's first.
        clock: seconds since the Unix epoch (``time.time``) or a ``Clock``
            (a fake one in tests). Called from worker threads. Public as :attr:`clock`
            (a reading in seconds): scheduled messages' due times are read on it.
        notify: send a NOTIFY with each commit of rows, and listen in
            :meth:`watch_commits`; False: relays of other processes find rows by polling.
    """

    def __init__(
        self,
        dsn_or_pool: str | ConnectionPool[Any] | PostgresPool,
        *,
        table: str = "messagebus_outbox",
        schema: str | None = None,
        clock: TimeSource = time.time,
        notify: bool = True,
    ) -> None:
        self._statements = _compose(check_table_name(table), schema)
        self._notify = notify
        self._channel = channel_name(schema, table)
        # The payload of this object's own notifications: its watch skips them when the
        # commit listeners (the relay's notify) were told the ids already.
        self._token = f"store-{new_message_id()}"
        self._clock = self.clock = wall_time(clock)
        self._listeners = CommitListeners()
        self._lock_key = f"messagebus:outbox-claim:{schema or ''}.{table}"
        database = (
            dsn_or_pool
            if isinstance(dsn_or_pool, PostgresPool)
            else PostgresPool(dsn_or_pool, name="messagebus-outbox")
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
                migrations=MIGRATIONS,
            )
        )

    def transaction(self) -> AbstractAsyncContextManager[PostgresTransaction]:
        """Open a unit of work; leaving the block commits it, an exception rolls it back.

        Committed messages go to the commit listeners once the commit has succeeded.
        """
        return open_transaction(
            self._database.transaction(),
            lambda held: PostgresTransaction(held, self._database),
            lambda connection, messages: self._insert(connection, messages, self._token),
            self._listeners,
        )

    def insert(self, connection: Connection[Any], messages: Sequence[OutboxMessage]) -> None:
        """Insert ``messages`` on your own psycopg connection, in your transaction.

        For code that manages its own connection (or an SQLAlchemy session on psycopg:
        its driver connection): the rows commit with your transaction. Blocking; nothing
        is told to the commit listeners, but the NOTIFY is sent (unless ``notify=False``),
        so listening relays wake at your commit; otherwise call the relay's ``notify``
        with the ids or let its poll find them. The table must exist (open the store
        once first).
        """
        self._insert(connection, messages, "")

    def _insert(
        self, connection: Connection[Any], messages: Sequence[OutboxMessage], payload: str
    ) -> None:
        with connection.cursor() as cursor:
            cursor.executemany(self._statements["insert"], [row(m) for m in messages])
            if self._notify and messages:
                # Transactional: delivered at the commit, dropped by a rollback.
                cursor.execute(self._statements["notify"], [self._channel, payload])

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with the message ids of every unit of work that commits some."""
        self._listeners.add(listener)

    async def watch_commits(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` soon after rows are committed by other store objects, until cancelled.

        Listens on a connection of its own (made from the DSN, or from the borrowed
        pool's ``conninfo`` and ``kwargs``), reconnecting with a backoff if it is lost,
        and calls ``wake()`` after each connection too. This store's own units of work
        do not wake it while it has commit listeners: they were told already. Returns at
        once if the store was made with ``notify=False``.
        """
        if not self._notify:
            return
        watch = CommitWatch(
            self._connect_with,
            self._channel,
            lambda: self._token if self._listeners else None,
        )
        await watch.run(wake)

    def _connect_with(self) -> tuple[str, dict[str, Any]]:
        source: Any = self._database.dsn_or_pool
        if isinstance(source, str):
            return source, {}
        # psycopg_pool >= 3.3 accepts callables for both.
        conninfo = source.conninfo() if callable(source.conninfo) else source.conninfo
        kwargs = source.kwargs() if callable(source.kwargs) else source.kwargs
        return conninfo or "", dict(kwargs or {})

    async def claim(
        self, owner: str, *, lease: float, limit: int, ids: Sequence[str] | None = None
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` claimable rows to ``owner`` for ``lease`` s, in commit order."""
        statement = self._statements["claim" if ids is None else "claim_ids"]

        def claim(connection: Connection[Any]) -> list[OutboxEntry]:
            from psycopg.rows import tuple_row  # noqa: PLC0415

            with connection.transaction(), connection.cursor(row_factory=tuple_row) as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [self._lock_key]
                )
                params = {"owner": owner, "now": self._clock(), "lease": lease, "limit": limit}
                rows = cursor.execute(statement, {**params, "ids": ids}).fetchall()
            # RETURNING gives no order: sort by seq, the commit order.
            return [entry(r[1:]) for r in sorted(rows)]

        return await self._database.run(claim)

    async def settle(self, owner: str, settlement: Settlement) -> None:
        """Record what became of rows ``owner`` claimed, in one transaction."""
        s, statements = settlement, self._statements

        def settle(connection: Connection[Any]) -> None:
            now = self._clock()
            with connection.transaction(), connection.cursor() as cursor:
                if s.sent:
                    cursor.execute(statements["sent"], [now, list(s.sent)])
                for statement, params in (
                    (statements["retry"], [(now + d, e, i, owner) for i, d, e in s.retry]),
                    (statements["dead"], [(e, i, owner) for i, e in s.dead]),
                    (statements["release"], [(i, owner) for i in s.released]),
                ):
                    if params:
                        cursor.executemany(statement, params)

        await self._database.run(settle)

    async def list(self, status: Status = "dead", *, limit: int = 100) -> Sequence[OutboxEntry]:
        """Return up to ``limit`` rows in this state, in commit order."""
        rows = await self._database.fetch(self._statements["list"], [status, limit])
        return [entry(r) for r in rows]

    async def requeue(self, message_id: str) -> bool:
        """Make a dead row pending again, attempts reset; return whether there was one."""
        return await self._change("requeue", [message_id]) > 0

    async def status(self) -> OutboxStatus:
        """Count the rows by state."""
        now = self._clock()
        rows = await self._database.fetch(self._statements["status"], {"now": now})
        pending, in_flight, dead, sent, oldest, scheduled = rows[0]
        age = None if oldest is None else max(0.0, now - oldest)
        return OutboxStatus(pending, in_flight, dead, sent, age, scheduled)

    async def cleanup(self, retention: float, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` rows sent more than ``retention`` s ago; return how many."""
        return await self._change("cleanup", [self._clock() - retention, limit])

    async def cancel(self, message_id: str, transaction: PostgresTransaction | None = None) -> bool:
        """Delete a scheduled row not delivered yet; return whether there was one.

        False for an unknown id, a message not scheduled, one delivered, parked as dead,
        or being delivered right now (leased by a live relay). ``transaction``: a unit
        of work of this store to do it in (it commits or rolls back with it).
        """
        params = [message_id, self._clock()]
        if transaction is not None:
            check_own(self._database, transaction)
            return await transaction.execute(self._statements["cancel"], params) > 0
        return await self._change("cancel", params) > 0

    async def until_due(self) -> float | None:
        """Seconds until the next pending row becomes claimable (scheduled or backing off).

        None when no pending row waits for a time (rows claimable now do not count).
        """
        now = self._clock()
        rows = await self._database.fetch(self._statements["next_due"], [now])
        due = rows[0][0]
        return None if due is None else float(due) - now

    async def _change(self, name: str, params: Sequence[object]) -> int:
        statement = self._statements[name]
        return await self._database.run(
            lambda connection: connection.execute(statement, params).rowcount
        )


def _compose(table: str, schema: str | None) -> dict[str, sql.Composed]:
    from psycopg import sql  # noqa: PLC0415

    target = qualified(schema, table)
    return {name: sql.SQL(text).format(t=target) for name, text in _STATEMENTS.items()}
