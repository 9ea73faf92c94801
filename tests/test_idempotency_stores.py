from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, closing, nullcontext
from pathlib import Path

import anyio
import anyio.to_thread
import attrs
import pytest

from messagebus._errors import IdempotencyError, SchemaVersionError
from messagebus.extension import IdempotencyStore
from messagebus.idempotency import (
    Claimed,
    ClaimOutcome,
    Completed,
    InMemoryIdempotencyStore,
    InProgress,
    Mismatch,
    PostgresIdempotencyStore,
    SQLiteIdempotencyStore,
)

pytestmark = pytest.mark.anyio

OpenStore = Callable[[], AbstractAsyncContextManager[IdempotencyStore]]
"""Opens a store on the test's database (the same one each call), on the fake clock."""

T0 = 1_714_564_800.0  # 2024-05-01 12:00 UTC; whole seconds, exact in every store
LEASE = 30.0
TTL = 3600.0
SCOPE = "send_welcome"
KEY = "user-7"
FINGERPRINT = "fp-1"
TABLE = "messagebus_idempotency"


@attrs.define
class FakeClock:
    """Seconds since the Unix epoch that move only when a test says so."""

    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@attrs.frozen
class Database:
    """One test's SQLite file or PostgreSQL schema."""

    open_table: Callable[[str], AbstractAsyncContextManager[IdempotencyStore]]
    """Make a store on the named table, on the test's fake clock."""
    run_sql: Callable[[str], None]
    """Run a statement on the database directly, outside any store (blocking)."""

    def open(self) -> AbstractAsyncContextManager[IdempotencyStore]:
        return self.open_table(TABLE)


def database(kind: str, request: pytest.FixtureRequest, clock: FakeClock) -> Database:
    if kind == "sqlite":
        path: Path = request.getfixturevalue("sqlite_path")

        def run_sqlite(statement: str) -> None:
            with closing(sqlite3.connect(path)) as connection, connection:
                connection.execute(statement)

        return Database(
            lambda table: SQLiteIdempotencyStore(path, table=table, clock=clock), run_sqlite
        )
    import psycopg

    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("postgres_schema")

    def run_postgres(statement: str) -> None:
        with psycopg.connect(dsn, options=f"-c search_path={schema}") as connection:
            connection.execute(statement)

    return Database(
        lambda table: PostgresIdempotencyStore(dsn, table=table, schema=schema, clock=clock),
        run_postgres,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, clock: FakeClock) -> OpenStore:
    kind = str(request.param)
    if kind == "memory":
        # Nothing is shared between in-memory stores, so a "second store" is the same one.
        shared = InMemoryIdempotencyStore(clock=clock)
        return lambda: nullcontext(shared)
    return database(kind, request, clock).open


@pytest.fixture
async def store(open_store: OpenStore) -> AsyncIterator[IdempotencyStore]:
    async with open_store() as store:
        yield store


@pytest.fixture(params=["sqlite", "postgres"])
def persistent(request: pytest.FixtureRequest, clock: FakeClock) -> Database:
    return database(str(request.param), request, clock)


async def claimed(
    store: IdempotencyStore,
    *,
    scope: str = SCOPE,
    key: str = KEY,
    fingerprint: str = FINGERPRINT,
    lease: float = LEASE,
) -> str:
    """Claim and return the token, failing the test unless the claim is Claimed."""
    outcome = await store.claim(scope, key, fingerprint, lease)
    assert isinstance(outcome, Claimed), outcome
    assert outcome.token
    return outcome.token


async def claim(
    store: IdempotencyStore, *, key: str = KEY, fingerprint: str = FINGERPRINT
) -> ClaimOutcome:
    return await store.claim(SCOPE, key, fingerprint, LEASE)


async def claim_concurrently(stores: list[IdempotencyStore], count: int) -> list[ClaimOutcome]:
    """Claim KEY ``count`` times from one task group, spread over ``stores``."""
    outcomes: list[ClaimOutcome] = []

    async def one(store: IdempotencyStore) -> None:
        outcomes.append(await claim(store))

    async with anyio.create_task_group() as tasks:
        for n in range(count):
            tasks.start_soon(one, stores[n % len(stores)])
    assert len(outcomes) == count
    return outcomes


def one_winner(outcomes: list[ClaimOutcome], lease_end: float) -> None:
    """Exactly one outcome is Claimed; every other one sees its lease."""
    winners = [outcome for outcome in outcomes if isinstance(outcome, Claimed)]
    assert len(winners) == 1, winners
    assert [o for o in outcomes if o != winners[0]] == [InProgress(lease_end)] * (len(outcomes) - 1)


RESULTS = {
    "json": '{"receipt": 9, "ok": true}',
    "empty": "",
    "unicode": 'Zoë "the" 🦊 — 行\n2\t☃ \\ \' \r\n',
    "large-json": json.dumps(
        {"items": [{"id": n, "name": f"módulo {n}", "tags": ["λ", "☃"]} for n in range(5000)]}
    ),
}


class TestIdempotencyStoreContract:
    """Every store claims, completes and expires records alike (memory, SQLite, PostgreSQL)."""

    async def test_first_claim_is_claimed(self, store: IdempotencyStore) -> None:
        """An unknown key is Claimed, with a token."""
        await claimed(store)

    async def test_a_claim_in_progress_reports_its_lease_end(
        self, store: IdempotencyStore, clock: FakeClock
    ) -> None:
        """While the holder runs, a claim (same fingerprint) is InProgress till the lease end."""
        await claimed(store)
        assert await claim(store) == InProgress(T0 + LEASE)
        clock.advance(LEASE - 1)
        assert await claim(store) == InProgress(T0 + LEASE)

    @pytest.mark.parametrize("result", RESULTS.values(), ids=RESULTS.keys())
    async def test_completed_claims_return_the_exact_result(
        self, store: IdempotencyStore, clock: FakeClock, result: str
    ) -> None:
        """After complete, every claim is Completed with the result text, byte for byte."""
        token = await claimed(store)
        await store.complete(SCOPE, KEY, token, result, TTL)
        clock.advance(TTL - 1)
        assert await claim(store) == Completed(result)
        assert await claim(store) == Completed(result)

    async def test_a_different_fingerprint_is_a_mismatch(self, store: IdempotencyStore) -> None:
        """Another payload under a live key is a Mismatch naming the stored fingerprint."""
        token = await claimed(store)
        assert await claim(store, fingerprint="fp-2") == Mismatch(FINGERPRINT)
        await store.complete(SCOPE, KEY, token, "done", TTL)
        assert await claim(store, fingerprint="fp-2") == Mismatch(FINGERPRINT)
        assert await claim(store) == Completed("done")

    async def test_release_lets_the_key_be_claimed_again(self, store: IdempotencyStore) -> None:
        """After release the next claim is Claimed, with a new token."""
        first = await claimed(store)
        await store.release(SCOPE, KEY, first)
        second = await claimed(store, fingerprint="fp-2")
        assert second != first
        assert await claim(store, fingerprint="fp-2") == InProgress(T0 + LEASE)

    async def test_a_stale_token_changes_nothing(
        self, store: IdempotencyStore, clock: FakeClock
    ) -> None:
        """A holder whose lease ran out and was reclaimed cannot complete or release."""
        first = await claimed(store)
        clock.advance(LEASE)
        second = await claimed(store)
        await store.complete(SCOPE, KEY, first, "stale", TTL)
        await store.release(SCOPE, KEY, first)
        assert await claim(store) == InProgress(T0 + 2 * LEASE)
        await store.complete(SCOPE, KEY, second, "fresh", TTL)
        await store.complete(SCOPE, KEY, first, "stale", TTL)
        await store.release(SCOPE, KEY, first)
        assert await claim(store) == Completed("fresh")

    async def test_an_expired_lease_can_be_claimed_again(
        self, store: IdempotencyStore, clock: FakeClock
    ) -> None:
        """At the lease end exactly the record is expired: Claimed, whatever the fingerprint."""
        first = await claimed(store)
        clock.advance(LEASE - 0.5)
        assert await claim(store) == InProgress(T0 + LEASE)
        clock.advance(0.5)
        second = await claimed(store, fingerprint="fp-2")
        assert second != first
        assert await claim(store, fingerprint="fp-2") == InProgress(T0 + 2 * LEASE)

    async def test_a_completed_record_past_its_ttl_can_be_claimed_again(
        self, store: IdempotencyStore, clock: FakeClock
    ) -> None:
        """The TTL counts from complete; at its end the key is Claimed again."""
        token = await claimed(store)
        clock.advance(10)
        await store.complete(SCOPE, KEY, token, "done", TTL)
        clock.advance(TTL - 1)
        assert await claim(store) == Completed("done")
        clock.advance(1)
        await claimed(store, fingerprint="fp-2")
        assert await claim(store, fingerprint="fp-2") == InProgress(clock.now + LEASE)

    async def test_scopes_are_independent(self, store: IdempotencyStore) -> None:
        """One key in two scopes is two records: both Claimed, each completed on its own."""
        first = await claimed(store, scope="a")
        second = await claimed(store, scope="b", fingerprint="fp-2")
        await store.complete("a", KEY, first, "from a", TTL)
        await store.release("a", KEY, second)
        await store.complete("b", KEY, first, "wrong scope", TTL)
        assert await store.claim("a", KEY, FINGERPRINT, LEASE) == Completed("from a")
        assert await store.claim("b", KEY, "fp-2", LEASE) == InProgress(T0 + LEASE)

    async def test_cleanup_removes_expired_records_in_batches(
        self, store: IdempotencyStore, clock: FakeClock
    ) -> None:
        """Cleanup deletes only expired records, at most limit per call, and counts them."""
        for n in range(2):
            await claimed(store, key=f"lapsed-{n}", lease=10)
        for n in range(3):
            token = await claimed(store, key=f"done-{n}")
            await store.complete(SCOPE, f"done-{n}", token, "done", 10)
        await claimed(store, key="running", lease=100)
        token = await claimed(store, key="kept")
        await store.complete(SCOPE, "kept", token, "kept", 100)
        assert await store.cleanup() == 0
        clock.advance(10)
        assert await store.cleanup(limit=0) == 0
        assert [await store.cleanup(limit=2) for _ in range(4)] == [2, 2, 1, 0]
        assert await claim(store, key="running") == InProgress(T0 + 100)
        assert await claim(store, key="kept") == Completed("kept")

    @pytest.mark.parametrize("expired", [False, True], ids=["new-key", "expired-record"])
    async def test_concurrent_claims_make_exactly_one_winner(
        self, store: IdempotencyStore, clock: FakeClock, expired: bool
    ) -> None:
        """50 claims of one key at once (new, or taking over a lapsed lease): one is Claimed."""
        if expired:
            await claimed(store)
            clock.advance(LEASE)
        outcomes = await claim_concurrently([store], 50)
        one_winner(outcomes, clock.now + LEASE)


class TestPersistentStores:
    """What the SQLite and PostgreSQL stores add: processes sharing records, a lifecycle."""

    @pytest.mark.parametrize("expired", [False, True], ids=["new-key", "expired-record"])
    async def test_two_stores_claiming_at_once_make_one_winner(
        self, persistent: Database, clock: FakeClock, expired: bool
    ) -> None:
        """25 claims through each of two stores on one database: one Claimed overall."""
        async with persistent.open() as first, persistent.open() as second:
            if expired:
                await claimed(first)
                clock.advance(LEASE)
            outcomes = await claim_concurrently([first, second], 50)
        one_winner(outcomes, clock.now + LEASE)

    async def test_stores_can_create_one_table_at_once(self, persistent: Database) -> None:
        """Four stores opening a fresh table concurrently all succeed and share it."""
        stores: list[IdempotencyStore] = []
        async with AsyncExitStack() as stack:

            async def enter() -> None:
                stores.append(await stack.enter_async_context(persistent.open_table("fresh")))

            async with anyio.create_task_group() as tasks:
                for _ in range(4):
                    tasks.start_soon(enter)
            token = await claimed(stores[0])
            await stores[1].complete(SCOPE, KEY, token, "done", TTL)
            for store in stores:
                assert await claim(store) == Completed("done")

    async def test_records_outlive_the_store(self, persistent: Database) -> None:
        """A record written by one store is seen by the next store on the same database."""
        async with persistent.open() as store:
            token = await claimed(store)
            await store.complete(SCOPE, KEY, token, "done", TTL)
        async with persistent.open() as store:
            assert await claim(store) == Completed("done")

    async def test_a_negative_limit_is_refused(self, persistent: Database) -> None:
        """cleanup's limit must be at least zero."""
        async with persistent.open() as store:
            with pytest.raises(ValueError, match="limit"):
                await store.cleanup(limit=-1)

    @pytest.mark.parametrize(
        "table", ['x"; DROP TABLE y; --', "1abc", "", "a" * 49, "messagebus_schema"]
    )
    def test_bad_table_names_are_refused(self, persistent: Database, table: str) -> None:
        """Table names are plain identifiers, checked before any SQL is built."""
        with pytest.raises(ValueError, match="table name"):
            persistent.open_table(table)

    async def test_a_closed_store_refuses_calls(self, persistent: Database) -> None:
        """After aclose (or the end of async with) calls raise ClosedResourceError."""
        async with persistent.open() as store:
            await claimed(store)
        with pytest.raises(anyio.ClosedResourceError):
            await claim(store)

    async def test_closing_an_unused_store_is_fine(self, persistent: Database) -> None:
        """A store never used closes without touching the database, twice over."""
        store = persistent.open()
        await store.__aexit__(None, None, None)
        await store.__aexit__(None, None, None)

    async def test_a_newer_schema_version_is_refused(self, persistent: Database) -> None:
        """A table migrated by a newer messagebus is not written by this one."""
        async with persistent.open():
            pass
        bump = f"UPDATE messagebus_schema SET version = version + 1 WHERE table_name = '{TABLE}'"
        await anyio.to_thread.run_sync(persistent.run_sql, bump)
        with pytest.raises(SchemaVersionError, match="schema version 2"):
            async with persistent.open():
                pass


class TestPostgresStore:
    """The PostgreSQL store on the database's clock, and with a pool it borrows."""

    async def test_the_database_clock_by_default(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """Without a clock, leases and TTLs run on the server's time."""
        async with PostgresIdempotencyStore(postgres_dsn, schema=postgres_schema) as store:
            token = await claimed(store)
            outcome = await claim(store)
            assert isinstance(outcome, InProgress)
            # The server runs on this host: its clock agrees with ours to well within this.
            assert outcome.lease_expires_at == pytest.approx(time.time() + LEASE, abs=10)
            await store.complete(SCOPE, KEY, token, "done", TTL)
            assert await claim(store) == Completed("done")
            # A zero lease or TTL has ended by the next statement: no sleeping needed.
            await claimed(store, key="short", lease=0)
            token = await claimed(store, key="short")
            await store.complete(SCOPE, "short", token, "gone", 0)
            assert await store.cleanup() == 1
            assert await claim(store) == Completed("done")

    async def test_a_borrowed_pool_is_used_as_is_and_left_open(
        self, postgres_dsn: str, postgres_schema: str, clock: FakeClock
    ) -> None:
        """Autocommit, another row factory and time zone change nothing; the pool stays open."""
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(
            postgres_dsn,
            min_size=1,
            max_size=2,
            open=False,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "options": "-c TimeZone=Asia/Kolkata",
            },
        )
        await anyio.to_thread.run_sync(pool.open)
        try:
            async with PostgresIdempotencyStore(pool, schema=postgres_schema, clock=clock) as store:
                token = await claimed(store)
                assert await claim(store) == InProgress(T0 + LEASE)
                assert await claim(store, fingerprint="fp-2") == Mismatch(FINGERPRINT)
                await store.complete(SCOPE, KEY, token, "done", TTL)
            async with PostgresIdempotencyStore(pool, schema=postgres_schema, clock=clock) as again:
                assert await claim(again) == Completed("done")
            assert not pool.closed
        finally:
            await anyio.to_thread.run_sync(pool.close)

    async def test_a_record_vanishing_between_the_statements_is_claimed_on_retry(
        self, postgres_dsn: str, postgres_schema: str, clock: FakeClock
    ) -> None:
        """If the live row is gone when the claim reads it (released meanwhile), it retries."""
        from psycopg import sql

        async with PostgresIdempotencyStore(
            postgres_dsn, schema=postgres_schema, clock=clock
        ) as store:
            await claimed(store)
            # White box: the read deletes the row first, as a release racing it would.
            statements = store._statements
            store._statements = statements._replace(
                select=sql.SQL(
                    "WITH gone AS (DELETE FROM {t} WHERE scope = %(scope)s AND key = %(key)s) "
                    "SELECT fingerprint, state, result, expires_at FROM {t} WHERE false"
                ).format(t=statements.qualified)
            )
            token = await claimed(store, fingerprint="fp-2")
            store._statements = statements
            assert await claim(store, fingerprint="fp-2") == InProgress(T0 + LEASE)
            await store.complete(SCOPE, KEY, token, "done", TTL)
            assert await claim(store, fingerprint="fp-2") == Completed("done")

    async def test_a_claim_gives_up_after_bounded_attempts(
        self, postgres_dsn: str, postgres_schema: str, clock: FakeClock
    ) -> None:
        """A record that neither can be taken over nor read makes the claim raise, not spin."""
        from psycopg import sql

        async with PostgresIdempotencyStore(
            postgres_dsn, schema=postgres_schema, clock=clock
        ) as store:
            await claimed(store)
            # White box: the read never finds the live row.
            store._statements = store._statements._replace(
                select=sql.SQL("SELECT 1, 2, 3, 4 WHERE false").format()
            )
            with pytest.raises(IdempotencyError, match="after 5 attempts"):
                await claim(store)
