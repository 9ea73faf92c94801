"""The database objects: one connection or one pool that hands out the stores on it."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from messagebus import ConfigurationError, MessageBus
from messagebus._errors import DatabaseMismatchError
from messagebus._sql import require_same_database
from messagebus.eventlog import InMemoryEventLog, SQLiteEventLog
from messagebus.idempotency import Claimed, SQLiteIdempotencyStore
from messagebus.outbox import SQLiteOutbox
from messagebus.postgres import PostgresDatabase
from messagebus.sqlite import SQLiteDatabase
from tests.messages import PostPublished

pytestmark = pytest.mark.anyio

Database = SQLiteDatabase | PostgresDatabase


class CountingSQLite(SQLiteDatabase):
    """An SQLite database that counts how often it is closed."""

    closes = 0

    async def aclose(self) -> None:
        self.closes += 1
        await super().aclose()


class CountingPostgres(PostgresDatabase):
    """A PostgreSQL database that counts how often it is closed."""

    closes = 0

    async def aclose(self) -> None:
        self.closes += 1
        await super().aclose()


@pytest.fixture(params=["sqlite", "postgres"])
def make(request: pytest.FixtureRequest) -> Callable[[], CountingSQLite | CountingPostgres]:
    """Make a new database object on the test's file, or on its schema."""
    if request.param == "sqlite":
        path: Path = request.getfixturevalue("sqlite_path")
        return lambda: CountingSQLite(path)
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("postgres_schema")
    return lambda: CountingPostgres(dsn, schema=schema)


async def use_every_store(database: Database) -> None:
    """One call on each of the four stores made from ``database``."""
    key = secrets.token_hex(4)
    assert isinstance(await database.idempotency().claim("s", key, "f", 60.0), Claimed)
    assert (await database.outbox().status()).pending == 0
    assert await database.dead_letters().list() == ()
    assert await database.event_log().last_position() == 0


class TestOneDatabase:
    """Every store made from a database object is on it, and on nothing else."""

    async def test_each_store_is_on_the_database_it_came_from(
        self, make: Callable[[], Database]
    ) -> None:
        """store.database is the object itself, for the four kinds of store."""
        database = make()
        stores = [
            database.outbox(),
            database.idempotency(),
            database.dead_letters(),
            database.event_log(),
        ]
        assert all(store.database is database for store in stores)
        async with database:
            await use_every_store(database)

    def test_a_store_made_alone_has_a_database_of_its_own(self, sqlite_path: Path) -> None:
        """Two stores made alone on one file: two database objects, two connections."""
        outbox, log = SQLiteOutbox(sqlite_path), SQLiteEventLog(sqlite_path)
        assert outbox.database is not log.database

    async def test_sqlite_stores_share_one_connection(self, sqlite_path: Path) -> None:
        """A TEMP table (one connection's own) made on the database is seen in a unit of work."""
        async with SQLiteDatabase(sqlite_path) as database:
            await database.run(lambda c: c.execute("CREATE TEMP TABLE marker (x INTEGER)"))
            await use_every_store(database)
            async with database.outbox().transaction() as tx:
                assert await tx.fetch("SELECT count(*) FROM temp.marker") == [(0,)]

    async def test_postgres_stores_share_one_pool(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """Four stores in use at once, on a pool of at most two: two server sessions at most."""
        from psycopg.conninfo import make_conninfo

        marker = f"mb-pool-{secrets.token_hex(4)}"
        dsn = make_conninfo(postgres_dsn, application_name=marker)
        database = PostgresDatabase(dsn, schema=postgres_schema, max_size=2)
        stores = [
            database.outbox(),
            database.idempotency(),
            database.dead_letters(),
            database.event_log(),
        ]
        async with database:
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(use_every_store, database)
            assert {id(store.database.pool) for store in stores} == {id(database.pool)}
            # Counted on the server: the pool's own sessions, whichever store opened them.
            rows = await database.fetch(_sessions_named(), [marker])
        ((sessions,),) = rows
        assert 1 <= sessions <= 2


def _sessions_named() -> Any:
    from psycopg import sql

    return sql.SQL("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s")


class TestHolders:
    """The database closes when its last holder lets go, once."""

    async def test_closing_one_store_leaves_the_others_open(
        self, make: Callable[[], CountingSQLite | CountingPostgres]
    ) -> None:
        """The bus's way: outbox and log entered and left one by one; the last one closes."""
        database = make()
        outbox, log, store = database.outbox(), database.event_log(), database.idempotency()
        async with outbox:
            async with log:
                assert await log.last_position() == 0
            assert database.closes == 0
            assert (await outbox.status()).pending == 0
            assert isinstance(await store.claim("s", "k", "f", 60.0), Claimed)
        assert database.closes == 1
        with pytest.raises(anyio.ClosedResourceError):
            await store.claim("s", "k", "f", 60.0)

    async def test_the_database_block_opens_and_closes_once(
        self, make: Callable[[], CountingSQLite | CountingPostgres]
    ) -> None:
        """A bus inside the block enters and leaves its stores; the block alone closes, once."""
        database = make()
        log = database.event_log()
        bus = MessageBus(outbox=database.outbox(), event_log=log)
        bus.declare(PostPublished)
        async with database:
            async with bus, bus.unit_of_work() as uow:
                uow.publish(PostPublished(1, "kept"))
            assert database.closes == 0
            records = await log.read()
            assert [record.envelope.message for record in records] == [PostPublished(1, "kept")]
        assert database.closes == 1
        with pytest.raises(anyio.ClosedResourceError):
            await database.open()

    async def test_a_failed_opening_holds_nothing(self, tmp_path: Path) -> None:
        """The block raises, the database is not closed: once the cause is gone, it opens."""
        folder = tmp_path / "not yet"
        database = SQLiteDatabase(folder / "blog.sqlite3")
        with pytest.raises(sqlite3.OperationalError):
            async with database:
                pytest.fail("entered a database that could not open")
        folder.mkdir()
        async with database:
            assert (await database.outbox().status()).pending == 0

    async def test_a_store_made_alone_closes_its_database(self, sqlite_path: Path) -> None:
        """As before: leaving a lone store's block closes its connection."""
        async with SQLiteIdempotencyStore(sqlite_path) as store:
            assert isinstance(await store.claim("s", "k", "f", 60.0), Claimed)
        with pytest.raises(anyio.ClosedResourceError):
            await store.claim("s", "k", "f", 60.0)

    async def test_a_store_made_after_the_database_opened_gets_its_table(
        self, make: Callable[[], Database]
    ) -> None:
        """Its table is set up before the database's next call."""
        async with make() as database:
            await database.open()
            assert await database.dead_letters().list() == ()


class TestRequireSameDatabase:
    """require_same_database: the event log must append in the outbox's transactions."""

    def test_stores_of_one_database_pass(self, make: Callable[[], Database]) -> None:
        """Outbox and log made from one object: accepted."""
        database = make()
        require_same_database(database.outbox(), database.event_log())

    def test_a_memory_log_is_refused(self, make: Callable[[], Database]) -> None:
        """An in-memory log cannot join a transaction: DatabaseMismatchError."""
        with pytest.raises(DatabaseMismatchError, match="SQL log on the outbox's database"):
            require_same_database(make().outbox(), InMemoryEventLog())

    def test_two_database_objects_on_one_place_are_refused(
        self, make: Callable[[], Database]
    ) -> None:
        """Same file or DSN, two objects: two connections, refused."""
        with pytest.raises(DatabaseMismatchError, match="one database object"):
            require_same_database(make().outbox(), make().event_log())

    def test_stores_made_alone_on_one_file_are_refused(self, sqlite_path: Path) -> None:
        """Each store made alone has its own connection: refused."""
        with pytest.raises(DatabaseMismatchError):
            require_same_database(SQLiteOutbox(sqlite_path), SQLiteEventLog(sqlite_path))

    def test_no_outbox_of_ours_is_refused(self, sqlite_path: Path) -> None:
        """Something that is not an SQL outbox has no database the log could share."""
        with pytest.raises(DatabaseMismatchError):
            require_same_database(object(), SQLiteDatabase(sqlite_path).event_log())

    def test_it_is_a_configuration_error(self) -> None:
        """Caught with the other set-up mistakes."""
        assert issubclass(DatabaseMismatchError, ConfigurationError)
