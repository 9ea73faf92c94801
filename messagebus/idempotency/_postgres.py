"""Idempotency records in a PostgreSQL table, shared by every store and process that uses it.

Uses psycopg 3's *sync* API and a :class:`psycopg_pool.ConnectionPool`, called in worker
threads through :func:`anyio.to_thread.run_sync`, like the PostgreSQL dead letter store
(:mod:`messagebus._sql._postgres`):
psycopg's async API runs on asyncio only, and this store must run on trio too. Needs the
``anyio-messagebus[postgres]`` extra; psycopg is imported when a store is made, so
``import messagebus`` works without it.

Table layout (created on first use, idempotently, in ``schema`` or else the first
schema of the search path; ``<table>`` defaults to ``messagebus_idempotency``)::

    <table>(scope text COLLATE "C", key text COLLATE "C", fingerprint text NOT NULL,
            token text NOT NULL,
            state text NOT NULL CHECK (state IN ('in_progress', 'completed')),
            result text NULL,      -- NULL while in progress
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (scope, key))
        -- expires_at: the lease's end while in progress, the TTL's end once completed;
        -- a record is expired once expires_at <= now
    <table>_expires_ix (expires_at)   -- for cleanup()
    messagebus_schema(table_name text PRIMARY KEY, version integer NOT NULL)
        -- one row per table messagebus manages, for later migrations

Time: by default "now" is the database server's ``clock_timestamp()``, so every process
using the table agrees on when a lease or a TTL ends, whatever their own clocks say. A
``clock`` given to the store (tests) is used instead, its time sent as a parameter.
Either way :attr:`~messagebus.idempotency.InProgress.lease_expires_at` is seconds since
the Unix epoch.

The contract (see :class:`~messagebus.extension.IdempotencyStore`): a claim is one
``INSERT ... ON CONFLICT (scope, key) DO UPDATE ... WHERE expires_at <= now RETURNING
token``. PostgreSQL serializes it on the key's unique index: of many concurrent claims of
one key exactly one inserts the row (or takes over an expired one) and gets its token
back; the others find a live row, which a second statement reads to report
:class:`~messagebus.idempotency.Mismatch`, :class:`~messagebus.idempotency.InProgress`
or :class:`~messagebus.idempotency.Completed`. :meth:`complete` and :meth:`release`
change the record only while it carries the caller's token. :meth:`cleanup` skips rows
other transactions hold, so concurrent cleanups and claims do not wait on each other.

Inbox mode (:class:`~messagebus.extension.InboxStore`): :meth:`claim_in` and
:meth:`complete_in` run the same statements on the caller's connection, inside its open
transaction (a unit of work of the :class:`~messagebus.outbox.PostgresOutbox` made from
the same :class:`~messagebus.postgres.PostgresDatabase`), so the record commits or
rolls back with the caller's writes. A concurrent
duplicate's ``INSERT ... ON CONFLICT`` waits on the holder's uncommitted row (at most
``wait`` seconds, through a ``lock_timeout`` set for that statement only), then sees it
completed, or inserts it if the holder rolled back; this needs READ COMMITTED, the
default (at REPEATABLE READ the duplicate fails with a serialization error instead). A
killed holder's session is rolled back by the server once its socket closes: no record
is left. The store's table may be in another schema than the outbox's (``schema=``):
the record still joins the transaction. If the table has not been set up yet when the
store is first used in a caller's transaction, :meth:`claim_in` creates it there.

Limits: errors from PostgreSQL or the pool (unreachable server, timeouts, permissions)
propagate as psycopg / psycopg_pool exceptions, unchanged. The schema must exist already.
PostgreSQL text cannot hold NUL characters, so a key, fingerprint or result with one is
refused (:class:`psycopg.DataError`). Times have microsecond precision. A cancelled call
still finishes in the worker thread: a cancelled claim may have claimed the key, which
then stays in progress until its lease ends. A schema version newer than this code knows
raises :class:`~messagebus.SchemaVersionError`. Calls after
:meth:`~PostgresIdempotencyStore.aclose` raise :class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from messagebus._clock import TimeSource, wall_time
from messagebus._errors import DuplicateInProgressError, IdempotencyError, InvalidArgumentError
from messagebus._ids import new_message_id
from messagebus._sql._postgres import PostgresPool, create_table, qualified
from messagebus._sql._schema import check_table_name
from messagebus._sql._store import SQLStore
from messagebus.idempotency._store import Claimed, ClaimOutcome, live_outcome

if TYPE_CHECKING:
    from psycopg import Connection, Cursor, sql
    from psycopg_pool import ConnectionPool

# psycopg is imported inside the functions below (hence the PLC0415 waivers): it is an
# optional extra, and importing messagebus must work without it.

__all__ = ["PostgresIdempotencyStore"]

SCHEMA_VERSION = 1
"""The layout of the idempotency table this code writes; recorded in ``messagebus_schema``."""

# A claim that finds no row to take over, then no live row to report, lost a race with a
# release or an expiry between its two statements; it tries again, this many times in
# all. (Within one transaction the ON CONFLICT locks the row it found, so this needs a
# holder to act between statements of an autocommit connection, or time to pass.)
_CLAIM_ATTEMPTS = 5

_TABLE = """CREATE TABLE IF NOT EXISTS {t} (
    scope text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    fingerprint text NOT NULL,
    token text NOT NULL,
    state text NOT NULL CHECK (state IN ('in_progress', 'completed')),
    result text,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
)"""
# "C" collation on the key columns: only equality matters, and bytewise comparison is
# the cheapest for the primary key index.

_CLAIM = """INSERT INTO {t} AS r (scope, key, fingerprint, token, state, result, expires_at)
VALUES (%(scope)s, %(key)s, %(fingerprint)s, %(token)s, 'in_progress', NULL,
        {now} + make_interval(secs => %(lease)s::float8))
ON CONFLICT (scope, key) DO UPDATE SET
    fingerprint = EXCLUDED.fingerprint,
    token = EXCLUDED.token,
    state = 'in_progress',
    result = NULL,
    expires_at = EXCLUDED.expires_at
WHERE r.expires_at <= {now}
RETURNING r.token"""
_SELECT = """SELECT fingerprint, state, result, expires_at FROM {t}
WHERE scope = %(scope)s AND key = %(key)s AND expires_at > {now}"""
_COMPLETE = """UPDATE {t} SET
    state = 'completed',
    result = %(result)s,
    expires_at = {now} + make_interval(secs => %(ttl)s::float8)
WHERE scope = %(scope)s AND key = %(key)s AND token = %(token)s"""
_RELEASE = "DELETE FROM {t} WHERE scope = %(scope)s AND key = %(key)s AND token = %(token)s"
# By primary key, in batches: SKIP LOCKED leaves rows that a claim or another cleanup
# holds; FOR UPDATE keeps the picked rows as they were until they are deleted.
_CLEANUP = """DELETE FROM {t} WHERE (scope, key) IN (
    SELECT scope, key FROM {t} WHERE expires_at <= {now}
    LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)"""


class _Statements(NamedTuple):
    """The statements for one table and time source, composed once with quoted names."""

    qualified: sql.Identifier
    claim: sql.Composed
    select: sql.Composed
    complete: sql.Composed
    release: sql.Composed
    cleanup: sql.Composed


class PostgresIdempotencyStore(SQLStore[PostgresPool]):
    """Keeps idempotency records in a PostgreSQL table.

    ``dsn_or_pool`` is a connection string, for which the store makes its own pool (one
    to four connections), opened on first use or on ``async with`` and closed by
    :meth:`aclose`; or an open :class:`psycopg_pool.ConnectionPool`, which the store
    borrows connections from and never opens or closes; or the database object to be
    on (:meth:`PostgresDatabase.idempotency
    <messagebus.postgres.PostgresDatabase.idempotency>` says the same).

    Args:
        dsn_or_pool: where to connect, as above.
        table: the table's name (letters, digits and underscores, at most 48).
        schema: the table's schema; None for the first schema of the search path.
        clock: seconds since the Unix epoch, used instead of the database's clock (for
            tests); called from a worker thread. None: the database's clock.
    """

    def __init__(
        self,
        dsn_or_pool: str | ConnectionPool[Any] | PostgresPool,
        *,
        table: str = "messagebus_idempotency",
        schema: str | None = None,
        clock: TimeSource | None = None,
    ) -> None:
        self._statements = _compose(check_table_name(table), schema, database_clock=clock is None)
        self._clock = None if clock is None else wall_time(clock)
        database = (
            dsn_or_pool
            if isinstance(dsn_or_pool, PostgresPool)
            else PostgresPool(dsn_or_pool, name="messagebus-idempotency")
        )
        self._on(database, alone=database is not dsn_or_pool)

        def set_up(connection: Connection[Any]) -> None:
            create_table(
                connection,
                schema=schema,
                table=table,
                version=SCHEMA_VERSION,
                definition=_TABLE,
                indexes=[("expires_ix", "expires_at")],
            )

        self._set_up = set_up
        database.add_set_up(set_up)

    async def claim(self, scope: str, key: str, fingerprint: str, lease: float) -> ClaimOutcome:
        """Claim ``key`` in ``scope`` for ``lease`` seconds, or report who has it.

        Raises:
            IdempotencyError: the key's record vanished between claiming and reading it,
                on every one of a few tries (concurrent cleanups); nothing was claimed.
        """
        from psycopg.rows import tuple_row  # noqa: PLC0415

        token = new_message_id()

        def claim(connection: Connection[Any]) -> ClaimOutcome:
            # One transaction, even on an autocommit connection from a borrowed pool: the
            # row the INSERT found stays locked until the SELECT has read it.
            # tuple_row: a borrowed pool may hand out connections with another row factory.
            with connection.transaction(), connection.cursor(row_factory=tuple_row) as cursor:
                return self._claim_on(cursor, scope, key, fingerprint, token=token, lease=lease)

        return await self._database.run(claim)

    def claim_in(
        self,
        connection: Connection[Any],
        scope: str,
        key: str,
        fingerprint: str,
        lease: float,
        *,
        wait: float | None = None,
    ) -> ClaimOutcome:
        """Claim ``key`` like :meth:`claim`, in the caller's transaction on ``connection``.

        Blocking. ``connection`` must be in a transaction (not autocommit) on this store's
        database, at READ COMMITTED (PostgreSQL's default): a duplicate's INSERT waits
        there for the holder's transaction, then reads what it committed. ``wait`` bounds
        that wait (``lock_timeout``, for this statement only); giving up raises
        :class:`~messagebus.DuplicateInProgressError` and leaves the transaction failed.
        Creates the table there first if it has not been set up yet.
        """
        from psycopg import errors  # noqa: PLC0415
        from psycopg.rows import tuple_row  # noqa: PLC0415

        if self._database.set_ups.pending(self._set_up):
            # Made after its pool opened, first used in a transaction: set up there (its
            # advisory lock lasts until that transaction ends), not on another pooled
            # connection, which a pool full of units of work may not have to spare.
            self._set_up(connection)
        token = new_message_id()
        with connection.cursor(row_factory=tuple_row) as cursor:
            if wait is None:
                return self._claim_on(cursor, scope, key, fingerprint, token=token, lease=lease)
            # 0 would mean no limit to PostgreSQL: at least a millisecond.
            limit = f"{max(1, round(wait * 1000))}ms"
            row = cursor.execute(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                [limit],
            ).fetchone()
            try:
                outcome = self._claim_on(cursor, scope, key, fingerprint, token=token, lease=lease)
            except errors.LockNotAvailable as error:
                raise DuplicateInProgressError(
                    f"key {key!r} of handler {scope} is being handled in another "
                    f"transaction; gave up waiting after {wait} s"
                ) from error
            # Local to the transaction: the caller's later statements get theirs back.
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [row[0] if row else "0"])
            return outcome

    def _claim_on(
        self,
        cursor: Cursor[Any],
        scope: str,
        key: str,
        fingerprint: str,
        *,
        token: str,
        lease: float,
    ) -> ClaimOutcome:
        statements = self._statements
        for _ in range(_CLAIM_ATTEMPTS):
            params = self._params(
                scope=scope, key=key, fingerprint=fingerprint, token=token, lease=lease
            )
            won = cursor.execute(statements.claim, params).fetchone()
            if won is not None and won[0] == token:
                return Claimed(token)
            live = cursor.execute(statements.select, params).fetchone()
            if live is not None:
                return _outcome(live, fingerprint)
        raise IdempotencyError(
            f"could not claim or read key {key!r} in scope {scope!r} after "
            f"{_CLAIM_ATTEMPTS} attempts: its record kept vanishing"
        )

    async def complete(self, scope: str, key: str, token: str, result: str, ttl: float) -> None:
        """Record the claim's result, to be returned to duplicates for ``ttl`` seconds."""
        await self._change(
            self._statements.complete,
            lambda: self._params(scope=scope, key=key, token=token, result=result, ttl=ttl),
        )

    def complete_in(
        self,
        connection: Connection[Any],
        scope: str,
        key: str,
        token: str,
        result: str,
        *,
        ttl: float,
    ) -> None:
        """Record the claim's result like :meth:`complete`, in the caller's transaction."""
        params = self._params(scope=scope, key=key, token=token, result=result, ttl=ttl)
        connection.execute(self._statements.complete, params)

    async def release(self, scope: str, key: str, token: str) -> None:
        """Delete the claim (the handler failed), so that the key can be claimed again."""
        await self._change(
            self._statements.release, lambda: self._params(scope=scope, key=key, token=token)
        )

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records; return how many went.

        A negative ``limit`` raises :class:`~messagebus.InvalidArgumentError`.
        """
        if limit < 0:
            raise InvalidArgumentError(f"limit must not be negative: {limit}")
        return await self._change(self._statements.cleanup, lambda: self._params(limit=limit))

    def _params(self, **params: object) -> dict[str, object]:
        """Return the statement's parameters, with the fake clock's time if there is one."""
        if self._clock is not None:
            params["now"] = datetime.fromtimestamp(self._clock(), UTC)
        return params

    async def _change(self, query: sql.Composed, params: Callable[[], dict[str, object]]) -> int:
        # params is called in the worker thread, next to the statement it goes with.
        return await self._database.run(
            lambda connection: connection.execute(query, params()).rowcount
        )


def _outcome(row: Sequence[Any], fingerprint: str) -> ClaimOutcome:
    """Map a live record (fingerprint, state, result, expires_at) to what a claim sees."""
    stored, state, result, expires_at = row
    # An aware datetime: its timestamp does not depend on the session's time zone.
    lease_end = expires_at.timestamp()
    return live_outcome(fingerprint, stored, None if state == "in_progress" else result, lease_end)


def _compose(table: str, schema: str | None, *, database_clock: bool) -> _Statements:
    from psycopg import sql  # noqa: PLC0415

    target = qualified(schema, table)
    # clock_timestamp(), not now(): the time when the statement gets there (after any
    # wait for a row lock), not when its transaction began.
    now = sql.SQL("clock_timestamp()" if database_clock else "%(now)s::timestamptz")

    def compose(template: str) -> sql.Composed:
        return sql.SQL(template).format(t=target, now=now)

    return _Statements(
        qualified=target,
        claim=compose(_CLAIM),
        select=compose(_SELECT),
        complete=compose(_COMPLETE),
        release=compose(_RELEASE),
        cleanup=compose(_CLEANUP),
    )
