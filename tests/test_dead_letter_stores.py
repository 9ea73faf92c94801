from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, closing, nullcontext
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import pytest

from messagebus._errors import SchemaVersionError
from messagebus._ids import new_message_id
from messagebus.dead_letters import (
    DeadLetter,
    InMemoryDeadLetterStore,
    PostgresDeadLetterStore,
    SQLiteDeadLetterStore,
)
from messagebus.extension import DeadLetterStore

pytestmark = pytest.mark.anyio

OpenStore = Callable[[str], AbstractAsyncContextManager[DeadLetterStore]]
"""Opens a store on the test's database, on the named table."""

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TABLE = "messagebus_dead_letters"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def letter(
    minutes: float = 0, *, message_type: str = "user.registered", handler: str = "send_welcome"
) -> DeadLetter:
    """A dead letter that last failed ``minutes`` after T0."""
    return DeadLetter(
        id=new_message_id(),
        handler=handler,
        message_type=message_type,
        message_id=new_message_id(),
        correlation_id=new_message_id(),
        body=json.dumps({"specversion": "1.0", "type": message_type, "data": {"user_id": 7}}),
        error_type="smtplib.SMTPServerDisconnected",
        error_message="Connection unexpectedly closed",
        traceback='Traceback (most recent call last):\n  File "app.py", line 1\n',
        attempts=3,
        first_failed_at=at(minutes) - timedelta(seconds=30, microseconds=1),
        last_failed_at=at(minutes),
    )


# Five letters over two types, two handlers and five minutes; list() and purge() cases
# below name the expected ones by index.
DATASET = [
    ("a", "h1", 0),
    ("b", "h1", 1),
    ("a", "h2", 2),
    ("b", "h2", 3),
    ("a", "h1", 4),
]


@attrs.frozen
class Database:
    """One test's SQLite file or PostgreSQL schema."""

    open: OpenStore
    run_sql: Callable[[str], None]
    """Run a statement on the database directly, outside any store (blocking)."""


def database(kind: str, request: pytest.FixtureRequest) -> Database:
    if kind == "sqlite":
        path: Path = request.getfixturevalue("sqlite_path")

        def run_sqlite(statement: str) -> None:
            with closing(sqlite3.connect(path)) as connection, connection:
                connection.execute(statement)

        return Database(lambda table: SQLiteDeadLetterStore(path, table=table), run_sqlite)
    import psycopg

    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("postgres_schema")

    def run_postgres(statement: str) -> None:
        with psycopg.connect(dsn, options=f"-c search_path={schema}") as connection:
            connection.execute(statement)

    return Database(
        lambda table: PostgresDeadLetterStore(dsn, table=table, schema=schema), run_postgres
    )


def open_memory() -> OpenStore:
    # Nothing is shared between in-memory stores, so a "second store" is the same one.
    shared: dict[str, InMemoryDeadLetterStore] = {}
    return lambda table: nullcontext(shared.setdefault(table, InMemoryDeadLetterStore()))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest) -> OpenStore:
    kind = str(request.param)
    return open_memory() if kind == "memory" else database(kind, request).open


@pytest.fixture
async def store(open_store: OpenStore) -> AsyncIterator[DeadLetterStore]:
    async with open_store(TABLE) as store:
        yield store


@pytest.fixture
async def other_store(
    open_store: OpenStore, store: DeadLetterStore
) -> AsyncIterator[DeadLetterStore]:
    """A second store on the same table, opened after ``store``."""
    async with open_store(TABLE) as other:
        yield other


@pytest.fixture
async def dataset(store: DeadLetterStore) -> list[DeadLetter]:
    letters = [
        letter(minutes, message_type=type_, handler=handler) for type_, handler, minutes in DATASET
    ]
    for each in reversed(letters):
        await store.add(each)
    return letters


class TestDeadLetterStoreContract:
    """Every store keeps, lists and removes dead letters alike (memory, SQLite, PostgreSQL)."""

    async def test_add_then_get_returns_an_equal_record(self, store: DeadLetterStore) -> None:
        """A record comes back equal, field for field."""
        kept = letter()
        await store.add(kept)
        assert await store.get(kept.id) == kept

    async def test_get_unknown_id_returns_none(self, store: DeadLetterStore) -> None:
        """An id never added gives None."""
        await store.add(letter())
        assert await store.get(new_message_id()) is None

    async def test_adding_an_existing_id_replaces_the_record(self, store: DeadLetterStore) -> None:
        """The last add of an id wins, as in the in-memory reference store."""
        first = letter()
        second = attrs.evolve(first, attempts=9, last_failed_at=at(1))
        await store.add(first)
        await store.add(second)
        assert await store.list() == (second,)

    async def test_list_orders_by_last_failure_then_id(self, store: DeadLetterStore) -> None:
        """Oldest last_failed_at first, to the microsecond; ties go by id."""
        micro = timedelta(microseconds=1)
        letters = [
            letter(1),
            letter(0),
            letter(0),
            attrs.evolve(letter(0), last_failed_at=T0 + micro),
        ]
        for each in letters:
            await store.add(each)
        expected = sorted(letters, key=lambda each: (each.last_failed_at, each.id))
        assert list(await store.list()) == expected

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({}, [0, 1, 2, 3, 4]),
            ({"message_type": "a"}, [0, 2, 4]),
            ({"handler": "h2"}, [2, 3]),
            ({"since": at(2)}, [2, 3, 4]),
            ({"until": at(2)}, [0, 1]),
            ({"since": at(1), "until": at(3)}, [1, 2]),
            ({"limit": 2}, [0, 1]),
            ({"limit": 0}, []),
            ({"message_type": "a", "handler": "h1"}, [0, 4]),
            ({"message_type": "a", "since": at(1), "until": at(5), "limit": 1}, [2]),
            ({"message_type": "c"}, []),
        ],
        ids=[
            "none",
            "type",
            "handler",
            "since-inclusive",
            "until-exclusive",
            "window",
            "limit",
            "limit-0",
            "type-handler",
            "all",
            "no-match",
        ],
    )
    async def test_list_filters(
        self,
        store: DeadLetterStore,
        dataset: list[DeadLetter],
        filters: dict[str, Any],
        expected: list[int],
    ) -> None:
        """Each filter alone and combined picks the expected records, in order."""
        assert list(await store.list(**filters)) == [dataset[index] for index in expected]

    async def test_delete_returns_true_then_false(self, store: DeadLetterStore) -> None:
        """Deleting removes the record once; a second delete finds nothing."""
        doomed, kept = letter(), letter()
        await store.add(doomed)
        await store.add(kept)
        assert await store.delete(doomed.id) is True
        assert await store.delete(doomed.id) is False
        assert await store.list() == (kept,)

    @pytest.mark.parametrize(
        ("filters", "expected_left"),
        [
            ({"message_type": "a"}, [1, 3]),
            ({"handler": "h1", "until": at(4)}, [2, 3, 4]),
            ({"until": at(0)}, [0, 1, 2, 3, 4]),
            ({}, []),
        ],
        ids=["type", "handler-until-exclusive", "nothing-before", "everything"],
    )
    async def test_purge_counts_and_leaves_the_rest(
        self,
        store: DeadLetterStore,
        dataset: list[DeadLetter],
        filters: dict[str, Any],
        expected_left: list[int],
    ) -> None:
        """Purge removes what matches, says how many, and keeps the others."""
        assert await store.purge(**filters) == len(dataset) - len(expected_left)
        assert list(await store.list()) == [dataset[index] for index in expected_left]

    async def test_unicode_and_long_texts_round_trip(self, store: DeadLetterStore) -> None:
        """Non-ASCII, quotes, newlines and a long traceback come back byte for byte."""
        frames = "".join(
            f'  File "/srv/app/módulo_{n}.py", line {n}, in λ\n    raise\n' for n in range(3000)
        )
        kept = attrs.evolve(
            letter(),
            handler="envoyer_l'e-mail 📧",
            body='{"data": {"name": "Zoë \\"the\\" 🦊", "note": "行\\n2"}, "type": "x"}',
            error_message="can't decode byte 0xff: 'utf-8' \"codec\"\n\tsecond line ✗",
            traceback=f"Traceback (most recent call last):\n{frames}ValueError: ☃\n",
        )
        await store.add(kept)
        assert await store.get(kept.id) == kept

    async def test_datetimes_come_back_utc_aware_and_equal(self, store: DeadLetterStore) -> None:
        """Times keep their microseconds and come back aware, in UTC."""
        kept = attrs.evolve(
            letter(),
            first_failed_at=datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            last_failed_at=datetime(2038, 1, 19, 3, 14, 8, 123_457, tzinfo=UTC),
        )
        await store.add(kept)
        got = await store.get(kept.id)
        assert got is not None
        for moment, original in [
            (got.first_failed_at, kept.first_failed_at),
            (got.last_failed_at, kept.last_failed_at),
        ]:
            assert moment == original
            assert moment.utcoffset() == timedelta(0)

    async def test_other_time_zones_mean_the_same_instant(self, store: DeadLetterStore) -> None:
        """An aware time in another zone is kept as the same instant, and filters by it."""
        kolkata = timezone(timedelta(hours=5, minutes=30))
        kept = attrs.evolve(
            letter(), last_failed_at=datetime(2024, 5, 1, 17, 30, 0, 1, tzinfo=kolkata)
        )
        await store.add(kept)
        got = await store.get(kept.id)
        assert got is not None
        assert got.last_failed_at == T0 + timedelta(microseconds=1)
        assert await store.list(since=T0 + timedelta(microseconds=1)) == (got,)
        assert await store.list(until=T0 + timedelta(microseconds=1)) == ()

    async def test_schema_creation_is_idempotent(
        self, store: DeadLetterStore, other_store: DeadLetterStore
    ) -> None:
        """A second store on an existing table opens cleanly and sees the same records."""
        first, second = letter(0), letter(1)
        await store.add(first)
        await other_store.add(second)
        assert await other_store.list() == (first, second)
        assert await store.list() == (first, second)

    async def test_stores_can_create_one_table_at_once(self, open_store: OpenStore) -> None:
        """Four stores opening a fresh table concurrently all succeed and share it."""
        stores: list[DeadLetterStore] = []
        async with AsyncExitStack() as stack:

            async def enter(store: AbstractAsyncContextManager[DeadLetterStore]) -> None:
                stores.append(await stack.enter_async_context(store))

            async with anyio.create_task_group() as tasks:
                for _ in range(4):
                    tasks.start_soon(enter, open_store("fresh"))
            kept = letter()
            await stores[0].add(kept)
            for store in stores:
                assert await store.get(kept.id) == kept

    async def test_concurrent_writers_lose_nothing(
        self, store: DeadLetterStore, other_store: DeadLetterStore
    ) -> None:
        """100 adds at once, 50 through each of two stores, all land exactly once."""
        letters = [letter(n % 7) for n in range(100)]
        async with anyio.create_task_group() as tasks:
            for n, each in enumerate(letters):
                tasks.start_soon((store if n % 2 else other_store).add, each)
        listed = await store.list()
        assert sorted(each.id for each in listed) == sorted(each.id for each in letters)
        assert set(listed) == set(letters)


@pytest.fixture(params=["sqlite", "postgres"])
def persistent(request: pytest.FixtureRequest) -> Database:
    return database(str(request.param), request)


class TestPersistentStores:
    """What the SQLite and PostgreSQL stores add to the contract: checks and a lifecycle."""

    async def test_naive_datetimes_are_refused(self, persistent: Database) -> None:
        """A time without a zone cannot mean one instant, so it is refused."""
        naive = datetime(2024, 5, 1, 12, 0)
        async with persistent.open(TABLE) as store:
            with pytest.raises(ValueError, match="timezone-aware"):
                await store.add(attrs.evolve(letter(), last_failed_at=naive))
            with pytest.raises(ValueError, match="timezone-aware"):
                await store.list(since=naive)
            with pytest.raises(ValueError, match="timezone-aware"):
                await store.purge(until=naive)

    async def test_a_negative_limit_is_refused(self, persistent: Database) -> None:
        """limit must be None or at least zero."""
        async with persistent.open(TABLE) as store:
            with pytest.raises(ValueError, match="limit"):
                await store.list(limit=-1)

    @pytest.mark.parametrize(
        "table", ['x"; DROP TABLE y; --', "1abc", "", "a" * 49, "messagebus_schema"]
    )
    def test_bad_table_names_are_refused(self, persistent: Database, table: str) -> None:
        """Table names are plain identifiers, checked before any SQL is built."""
        with pytest.raises(ValueError, match="table name"):
            persistent.open(table)

    async def test_a_closed_store_refuses_calls(self, persistent: Database) -> None:
        """After aclose (or the end of async with) calls raise ClosedResourceError."""
        async with persistent.open(TABLE) as store:
            await store.add(letter())
        with pytest.raises(anyio.ClosedResourceError):
            await store.list()

    async def test_closing_an_unused_store_is_fine(self, persistent: Database) -> None:
        """A store never used closes without touching the database, twice over."""
        store = persistent.open(TABLE)
        await store.__aexit__(None, None, None)
        await store.__aexit__(None, None, None)

    async def test_a_newer_schema_version_is_refused(self, persistent: Database) -> None:
        """A table migrated by a newer messagebus is not written by this one."""
        async with persistent.open(TABLE):
            pass
        bump = "UPDATE messagebus_schema SET version = version + 1"
        await anyio.to_thread.run_sync(persistent.run_sql, bump)
        with pytest.raises(SchemaVersionError, match="schema version 2"):
            async with persistent.open(TABLE):
                pass


class TestPostgresStore:
    """The PostgreSQL store with a pool it borrows."""

    async def test_a_borrowed_pool_is_used_as_is_and_left_open(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """Another row factory and session time zone change nothing; the pool stays open."""
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(
            postgres_dsn,
            min_size=1,
            max_size=2,
            open=False,
            kwargs={"row_factory": dict_row, "options": "-c TimeZone=Asia/Kolkata"},
        )
        await anyio.to_thread.run_sync(pool.open)
        try:
            kept = letter()
            async with PostgresDeadLetterStore(pool, schema=postgres_schema) as store:
                await store.add(kept)
                got = await store.get(kept.id)
                assert got is not None
                assert got == kept
                assert got.last_failed_at.utcoffset() == timedelta(0)
            async with PostgresDeadLetterStore(pool, schema=postgres_schema) as again:
                assert await again.list() == (kept,)
            assert not pool.closed
        finally:
            await anyio.to_thread.run_sync(pool.close)


class TestInMemoryLimits:
    """The in-memory store refuses what the SQL stores refuse."""

    async def test_a_negative_limit_is_refused(self) -> None:
        """A negative limit is a ValueError, not a silent slice."""
        with pytest.raises(ValueError, match="limit"):
            await InMemoryDeadLetterStore().list(limit=-1)
