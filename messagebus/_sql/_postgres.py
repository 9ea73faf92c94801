"""A psycopg connection pool used from worker threads, for the PostgreSQL stores.

:class:`PostgresPool` calls psycopg 3's *sync* API through
:func:`anyio.to_thread.run_sync`: psycopg's async API runs on asyncio only, and the
stores must run on trio too. psycopg is imported when a database object is made, never
at import time, so ``import messagebus`` works without the ``postgres`` extra. It is a
:class:`~._database.SharedDatabase`: every store made on one object shares its one pool.
Contract:

- Given a DSN, it makes its own :class:`psycopg_pool.ConnectionPool` (one to
  ``max_size`` connections, four by default), opened by the first call in a worker
  thread and closed by :meth:`~PostgresPool.aclose`. Before it opens, one connection
  is tried with a :data:`CONNECT_TIMEOUT`: an unreachable server, a misspelt host or
  database or a refused login raises :class:`~messagebus.StoreUnavailableError` with
  PostgreSQL's reason at once (the pool alone would retry for 30 s, logging each
  attempt, and end in a ``PoolTimeout`` that names no reason); the next call tries
  again. Given a pool, it borrows connections from it as they come (autocommit or not,
  any row factory) and never opens or closes it.
- At most as many calls run in threads as the pool has connections; the rest queue in
  the event loop.
- Before a call, once across threads, the stores' pending table set-ups
  (:meth:`~PostgresPool.add_set_up`, :class:`~._schema.SetUps`) run on a pooled
  connection, each in a transaction; one that raises is tried again by the next call.
- :meth:`~PostgresPool.run` gives a pooled connection to a function; leaving it
  commits, or rolls back if the function raised (on a non-autocommit connection).
  :meth:`~PostgresPool.fetch` returns a query's rows as tuples.
- :meth:`~PostgresPool.transaction` holds a pooled connection for one transaction
  spanning several calls (a :class:`~._transaction.HeldTransaction`; a borrowed pool's
  autocommit connection is switched out of autocommit for it, and back), committed
  when the block is left normally, rolled back if it raises. It counts against the
  pool's size like a call for as long as it is open.
- :meth:`~PostgresPool.aclose` refuses further calls and closes an owned pool,
  shielded from cancellation; later calls raise :class:`anyio.ClosedResourceError`.
- A cancelled call still finishes in its worker thread; errors from PostgreSQL or the
  pool propagate as psycopg / psycopg_pool exceptions, unchanged.

:func:`create_table` is a ``set_up`` building block: a table with its indexes and its
version row, serialised across sessions, refusing a newer recorded version.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread

from messagebus._errors import StoreUnavailableError
from messagebus._sql._database import SharedDatabase
from messagebus._sql._schema import VERSION_TABLE, SetUps, check_version
from messagebus._sql._transaction import HeldTransaction

if TYPE_CHECKING:
    from psycopg import Connection, sql
    from psycopg_pool import ConnectionPool

# psycopg is imported inside the functions below (hence the PLC0415 waivers): it is an
# optional extra, and importing messagebus must work without it.

__all__ = ["CONNECT_TIMEOUT", "PostgresPool", "connection_failure", "create_table", "qualified"]

CONNECT_TIMEOUT = 5
"""Seconds the first connection of a pool made from a DSN may take (libpq's minimum: 2)."""

_T = TypeVar("_T")


class PostgresPool(SharedDatabase):
    """A pool, owned (from a DSN) or borrowed, used from worker threads; see the module.

    ``name`` names an owned pool (in its threads and logs); ``max_size`` is an owned
    pool's number of connections at most.
    """

    def __init__(
        self, dsn_or_pool: str | ConnectionPool[Any], *, name: str, max_size: int = 4
    ) -> None:
        from psycopg_pool import ConnectionPool  # noqa: PLC0415

        super().__init__()
        self.dsn_or_pool = dsn_or_pool
        """What the pool was made from: a DSN, or the borrowed pool."""
        self._owns_pool = isinstance(dsn_or_pool, str)
        # open=False: no I/O or threads in a constructor; _set_up opens it in a worker.
        self._pool: ConnectionPool[Any] = (
            ConnectionPool(dsn_or_pool, min_size=1, max_size=max_size, open=False, name=name)
            if isinstance(dsn_or_pool, str)
            else dsn_or_pool
        )
        self.set_ups: SetUps[Connection[Any]] = SetUps()
        """The stores' table set-ups; see :class:`~._schema.SetUps`."""
        # No more threads than connections: extra calls wait in the event loop, not in
        # threads blocked on the pool, which would starve anyio's shared thread limiter.
        self._limiter = anyio.CapacityLimiter(self._pool.max_size)
        self._ready = False
        self._closed = False
        self._setup_lock = threading.Lock()

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The pool: made from the DSN, or the one borrowed."""
        return self._pool

    def add_set_up(self, set_up: Callable[[Connection[Any]], None]) -> None:
        """Run ``set_up`` (a store's tables) once, in a transaction, before the next call."""
        self.set_ups.add(set_up)

    async def open(self) -> None:
        """Open an owned pool and set up the pending tables now, if not done yet."""
        await self.run(lambda connection: None)

    async def run(self, call: Callable[[Connection[Any]], _T]) -> _T:
        """Return ``call(connection)``, run in a worker thread on a pooled connection."""
        if self._closed:
            raise anyio.ClosedResourceError
        return await anyio.to_thread.run_sync(self._call, call, limiter=self._limiter)

    async def fetch(
        self, query: sql.Composed, params: Sequence[object] | Mapping[str, object]
    ) -> Sequence[tuple[Any, ...]]:
        """Return every row of ``query``, as tuples whatever the connection's row factory."""
        from psycopg.rows import tuple_row  # noqa: PLC0415

        def fetch(connection: Connection[Any]) -> Sequence[tuple[Any, ...]]:
            # A borrowed pool may hand out connections with another row factory.
            with connection.cursor(row_factory=tuple_row) as cursor:
                return cursor.execute(query, params).fetchall()

        return await self.run(fetch)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[HeldTransaction[Connection[Any]]]:
        """Hold a pooled connection in one transaction for the block."""
        if self._closed:
            raise anyio.ClosedResourceError
        # One of the limiter's tokens for the whole block: the held connection is one
        # the pool cannot lend to calls meanwhile.
        async with self._limiter:
            connection, autocommit = await anyio.to_thread.run_sync(self._check_out)
            held = HeldTransaction(connection)
            try:
                try:
                    yield held
                except BaseException:
                    await held.end(lambda connection: connection.rollback())
                    raise
                await held.end(lambda connection: connection.commit())
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._check_in, connection, autocommit)

    def _check_out(self) -> tuple[Connection[Any], bool]:
        if self._closed:
            raise anyio.ClosedResourceError
        if not self._ready or self.set_ups:
            self._set_up()
        connection = self._pool.getconn()
        autocommit = connection.autocommit
        if autocommit:
            # psycopg opens the transaction implicitly at the first statement.
            connection.autocommit = False
        return connection, autocommit

    def _check_in(self, connection: Connection[Any], autocommit: bool) -> None:
        try:
            if autocommit and not connection.closed:
                connection.autocommit = True
        finally:
            self._pool.putconn(connection)

    async def aclose(self) -> None:
        """Refuse further calls; close the pool if this object made it."""
        self._closed = True
        if self._owns_pool:
            # Shielded: a cancelled close would leave the pool's threads running.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._pool.close)

    def _call(self, call: Callable[[Connection[Any]], _T]) -> _T:
        # Checked again in the thread: aclose() may have run while this call queued.
        if self._closed:
            raise anyio.ClosedResourceError
        if not self._ready or self.set_ups:
            self._set_up()
        # Leaving the block commits, or rolls back if the call raised.
        with self._pool.connection() as connection:
            return call(connection)

    def _set_up(self) -> None:
        # A lock, not the limiter: several threads may reach here before any is ready.
        with self._setup_lock:
            if not self._ready:
                if self._owns_pool:
                    assert isinstance(self.dsn_or_pool, str)
                    _reach(self.dsn_or_pool)
                    self._pool.open()
                self._ready = True
        if self.set_ups:
            self.set_ups.run(self._set_up_one)

    def _set_up_one(self, set_up: Callable[[Connection[Any]], None]) -> None:
        with self._pool.connection() as connection, connection.transaction():
            set_up(connection)


def connection_failure(dsn: str) -> str | None:
    """Connect to ``dsn`` once, within :data:`CONNECT_TIMEOUT`; return why it failed, if it did.

    The reason is psycopg's (PostgreSQL's), on one line; None when the connection was made.
    """
    import psycopg  # noqa: PLC0415

    try:
        psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT).close()
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def _reach(dsn: str) -> None:
    """Raise :class:`~messagebus.StoreUnavailableError` if ``dsn`` cannot be connected to."""
    reason = connection_failure(dsn)
    if reason is not None:
        raise StoreUnavailableError(f"cannot reach PostgreSQL: {reason}")


def qualified(schema: str | None, name: str) -> sql.Identifier:
    """Return ``name`` as a quoted identifier, in ``schema`` if one is given."""
    from psycopg import sql  # noqa: PLC0415

    return sql.Identifier(name) if schema is None else sql.Identifier(schema, name)


def create_table(
    connection: Connection[Any],
    *,
    schema: str | None,
    table: str,
    version: int,
    definition: str,
    indexes: Sequence[tuple[str, str]] = (),
    migrations: Mapping[int, Sequence[str]] | None = None,
) -> None:
    """Create ``table`` and its indexes if missing, and record its ``version``.

    ``definition`` is a ``CREATE TABLE IF NOT EXISTS {t} (...)`` template, ``{t}`` being
    the qualified table; each index is a name suffix and its column list, made as
    ``<table>_<suffix>``. A table recorded at an older version is brought to
    ``version`` first: ``migrations[n]`` are the statement templates (``{t}`` as above)
    taking version ``n`` to ``n + 1``, run in the set-up transaction. Raises
    :class:`~messagebus.SchemaVersionError` if the table's recorded version is newer
    than ``version``. Must run in a transaction (``set_up`` does): the advisory lock it
    takes is released at its end.
    """
    from psycopg import sql  # noqa: PLC0415
    from psycopg.rows import tuple_row  # noqa: PLC0415

    target, versions = qualified(schema, table), qualified(schema, VERSION_TABLE)
    # CREATE TABLE IF NOT EXISTS races with itself across sessions (a duplicate pg_type
    # row); a transaction-scoped advisory lock per table makes creators take turns. The
    # key must not change: other processes may run other messagebus versions.
    connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        [f"messagebus:{schema or ''}.{table}"],
    )
    connection.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {v} (table_name text PRIMARY KEY, version integer NOT NULL)"
        ).format(v=versions)
    )
    # tuple_row: a borrowed pool may hand out connections with another row factory.
    with connection.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute(
            sql.SQL("SELECT version FROM {v} WHERE table_name = %s").format(v=versions), [table]
        ).fetchone()
    found = None if row is None else int(row[0])
    check_version(table, found, version)
    connection.execute(sql.SQL(definition).format(t=target))
    if found is not None and found < version:
        for step in range(found, version):
            for statement in (migrations or {}).get(step, ()):
                connection.execute(sql.SQL(statement).format(t=target))
        connection.execute(
            sql.SQL("UPDATE {v} SET version = %s WHERE table_name = %s").format(v=versions),
            [version, table],
        )
    for suffix, columns in indexes:
        connection.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} ({c})").format(
                i=sql.Identifier(f"{table}_{suffix}"),
                t=target,
                c=sql.SQL(columns),
            )
        )
    connection.execute(
        sql.SQL(
            "INSERT INTO {v} (table_name, version) VALUES (%s, %s) "
            "ON CONFLICT (table_name) DO NOTHING"
        ).format(v=versions),
        [table, version],
    )
