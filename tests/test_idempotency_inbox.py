"""Inbox mode: the idempotency record commits in the handler's own transaction."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from messagebus import (
    DuplicateInProgressError,
    IdempotencyKeyReused,
    InboxConfigurationError,
    MessageBus,
)
from messagebus.extension import InboxStore
from messagebus.idempotency import Claimed, Completed, InMemoryIdempotencyStore
from messagebus.middleware import IdempotencyMiddleware
from messagebus.postgres import PostgresDatabase
from messagebus.sqlite import SQLiteDatabase
from tests.inbox_support import (
    HANDLER,
    InboxDatabase,
    Outbox,
    Store,
    blog,
    database_at,
    inbox_database,
)
from tests.messages import PostId, PublishPost

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
RECORDS = "messagebus_idempotency"
OUTBOX = "messagebus_outbox"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> InboxDatabase:
    return inbox_database(str(request.param), request)


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> InboxDatabase:
    return inbox_database("postgres", request)


@pytest.fixture
async def store(db: InboxDatabase) -> AsyncIterator[Store]:
    async with db.store() as store:
        yield store


async def wait_until(condition: Any, what: str) -> None:
    """Poll ``condition`` (blocking, run in a thread) until true; fail after 10 s."""
    deadline = time.monotonic() + 10.0
    while not await anyio.to_thread.run_sync(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await anyio.sleep(0.01)


class TestExactlyOnce:
    """The handler's writes, its messages and the record commit together."""

    async def test_a_duplicate_returns_the_stored_result_and_writes_nothing(
        self, db: InboxDatabase, store: Store
    ) -> None:
        """Second send, same key: the first run's PostId, no second row, no second message."""
        app = blog(db.outbox(), store)
        async with app.bus:
            first = await app.bus.send(PublishPost("hello"), idempotency_key="post-1")
            again = await app.bus.send(PublishPost("hello"), idempotency_key="post-1")
        assert first == again == PostId(1)
        assert app.runs == ["hello"]
        assert db.titles() == ["hello"]
        assert db.count(OUTBOX) == 1
        ((state, result),) = db.query(f"SELECT state, result FROM {RECORDS}")
        assert (state, result) == ("completed", '2:{"value":1}')  # msgspec JSON, prefixed

    async def test_a_failure_after_writing_leaves_neither_row_nor_record(
        self, db: InboxDatabase, store: Store
    ) -> None:
        """The rollback releases the claim: the retry runs again and succeeds, once."""
        failures = [RuntimeError("disk on fire")]

        async def fail_once() -> None:
            if failures:
                raise failures.pop()

        app = blog(db.outbox(), store, after_write=fail_once)
        async with app.bus:
            with pytest.raises(RuntimeError, match="disk on fire"):
                await app.bus.send(PublishPost("hello"), idempotency_key="post-1")
            assert (db.titles(), db.count(RECORDS), db.count(OUTBOX)) == ([], 0, 0)
            assert await app.bus.send(PublishPost("hello"), idempotency_key="post-1") == PostId(1)
            assert await app.bus.send(PublishPost("hello"), idempotency_key="post-1") == PostId(1)
        assert app.runs == ["hello", "hello"]
        assert (db.titles(), db.count(RECORDS), db.count(OUTBOX)) == (["hello"], 1, 1)

    async def test_concurrent_duplicates_in_one_process_queue(
        self, db: InboxDatabase, store: Store
    ) -> None:
        """Ten sends of one key at once: one run, one row, ten identical results."""
        app = blog(db.outbox(), store)
        results: list[PostId] = []

        async def send() -> None:
            results.append(await app.bus.send(PublishPost("hi"), idempotency_key="post-1"))

        async with app.bus, anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(send)
        assert results == [PostId(1)] * 10
        assert (app.runs, db.titles()) == (["hi"], ["hi"])

    async def test_the_same_key_for_another_payload_is_refused(
        self, db: InboxDatabase, store: Store
    ) -> None:
        """IdempotencyKeyReused, and the refused run's unit of work writes nothing."""
        app = blog(db.outbox(), store)
        async with app.bus:
            await app.bus.send(PublishPost("hello"), idempotency_key="post-1")
            with pytest.raises(IdempotencyKeyReused):
                await app.bus.send(PublishPost("other"), idempotency_key="post-1")
        assert (app.runs, db.titles()) == (["hello"], ["hello"])

    async def test_a_claim_made_outside_inbox_mode_is_in_progress(
        self, db: InboxDatabase, store: Store
    ) -> None:
        """A committed IN_PROGRESS record (mixed use) raises at once: no waiting, no run."""
        app = blog(db.outbox(), store)
        digest = IdempotencyMiddleware(store).fingerprint_of(
            _envelope(PublishPost("hello"), "post-1")
        )
        assert isinstance(await store.claim(HANDLER, "post-1", digest, 60.0), Claimed)
        async with app.bus:
            with pytest.raises(DuplicateInProgressError, match="outside inbox mode"):
                await app.bus.send(PublishPost("hello"), idempotency_key="post-1")
        assert (app.runs, db.titles()) == ([], [])


def _envelope(message: PublishPost, key: str) -> Any:
    from messagebus import Envelope

    return Envelope(message, idempotency_key=key)


class TestPostgresConcurrency:
    """Duplicates from many tasks and connections wait for the holder's transaction."""

    async def test_thirty_concurrent_duplicates_make_one_row(self, postgres: InboxDatabase) -> None:
        """The holder waits until a duplicate is blocked on its record; still one run."""
        assert postgres.schema is not None
        marker = postgres.schema

        def a_duplicate_is_blocked() -> bool:
            rows = postgres.query(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                f"AND query LIKE '%{marker}%' AND query LIKE 'INSERT%'"
            )
            return int(rows[0][0]) > 0

        async def hold_until_a_duplicate_waits() -> None:
            await wait_until(a_duplicate_is_blocked, "a duplicate to block on the record")

        async with postgres.store() as store:
            app = blog(postgres.outbox(), store, after_write=hold_until_a_duplicate_waits)
            results: list[PostId] = []

            async def send() -> None:
                results.append(await app.bus.send(PublishPost("hi"), idempotency_key="post-1"))

            async with app.bus, anyio.create_task_group() as tg:
                for _ in range(30):
                    tg.start_soon(send)
        assert results == [PostId(1)] * 30
        assert (app.runs, postgres.titles(), postgres.count(OUTBOX)) == (["hi"], ["hi"], 1)

    async def test_a_duplicate_gives_up_after_the_wait(self, postgres: InboxDatabase) -> None:
        """lock_timeout of ``wait``: DuplicateInProgressError; the holder then commits."""
        holding, release = anyio.Event(), anyio.Event()

        async def hold() -> None:
            holding.set()
            await release.wait()

        async with postgres.store() as store:
            app = blog(postgres.outbox(), store, after_write=hold, wait=0.2)
            async with app.bus, anyio.create_task_group() as tg:
                tg.start_soon(partial(app.bus.send, PublishPost("hi"), idempotency_key="post-1"))
                await holding.wait()
                with pytest.raises(DuplicateInProgressError, match="another transaction"):
                    await app.bus.send(PublishPost("hi"), idempotency_key="post-1")
                release.set()
        assert (app.runs, postgres.titles()) == (["hi"], ["hi"])


class TestCrash:
    """A process killed in the handler, after its write and before the commit."""

    async def test_killed_before_commit_leaves_nothing_and_a_rerun_runs_once(
        self, db: InboxDatabase
    ) -> None:
        """No post, no record (nothing IN_PROGRESS to wait out), no message; the rerun runs once."""
        command = [sys.executable, "-m", "tests.inbox_crash", db.kind, db.location]
        if db.schema is not None:
            command.append(db.schema)
        async with await anyio.open_process(command, cwd=ROOT) as process:
            assert process.stdout is not None
            seen = ""
            with anyio.fail_after(60):
                while "written" not in seen:
                    seen += (await process.stdout.receive()).decode()
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
        # PostgreSQL rolls the dead session back once it sees its socket closed.
        await wait_until(lambda: db.count(RECORDS) == 0, "the killed session's rollback")
        assert (db.titles(), db.count(OUTBOX)) == ([], 0)
        async with db.store() as store:
            app = blog(db.outbox(), store)
            async with app.bus:
                rerun = await app.bus.send(PublishPost("crash"), idempotency_key="post-1")
                again = await app.bus.send(PublishPost("crash"), idempotency_key="post-1")
        assert rerun == again == PostId(1)
        assert app.runs == ["crash"]
        assert (db.titles(), db.count(RECORDS), db.count(OUTBOX)) == (["crash"], 1, 1)


class TestRefusals:
    """Inbox mode refuses set-ups where the record could not join the transaction."""

    async def test_no_unit_of_work(self, db: InboxDatabase, store: Store) -> None:
        """Without UnitOfWorkMiddleware: InboxConfigurationError, and the handler never runs."""
        bus = MessageBus(outbox=db.outbox())
        runs: list[str] = []

        async def publish(command: PublishPost) -> PostId:
            runs.append(command.title)
            return PostId(0)

        bus.handler(PublishPost, publish, middleware=[IdempotencyMiddleware(store, inbox=True)])
        async with bus:
            with pytest.raises(InboxConfigurationError, match="only in a unit of work"):
                await bus.send(PublishPost("hello"))
        assert runs == []
        assert db.count(RECORDS) == 0

    def test_a_store_that_cannot_join_a_transaction(self) -> None:
        """The in-memory store is refused when the middleware is made."""
        with pytest.raises(InboxConfigurationError, match="InMemoryIdempotencyStore"):
            IdempotencyMiddleware(InMemoryIdempotencyStore(), inbox=True)

    @pytest.mark.parametrize("where", ["same place", "another file or schema"])
    async def test_a_store_of_another_database_object(
        self, tmp_path: Path, db: InboxDatabase, where: str
    ) -> None:
        """Another database object, even on the same file or DSN: refused, nothing written."""
        if where == "same place":
            location, schema = db.location, db.schema
        elif db.kind == "sqlite":
            location, schema = str(tmp_path / "other.sqlite3"), None
        else:
            location, schema = db.location, "public"
        other = database_at(db.kind, location, schema).idempotency()
        app = blog(db.outbox(), other)
        async with other, app.bus:
            with pytest.raises(InboxConfigurationError, match="on the database object"):
                await app.bus.send(PublishPost("hello"))
        assert (app.runs, db.titles()) == ([], [])

    async def test_a_store_in_another_schema_of_the_database_is_fine(
        self, postgres: InboxDatabase, postgres_dsn: str
    ) -> None:
        """Same database object, the store's table in another schema: one transaction still."""
        database = postgres.shared
        assert isinstance(database, PostgresDatabase)
        async with self.other_schema(postgres, postgres_dsn) as name:
            async with database.idempotency(schema=name) as other:
                app = blog(postgres.outbox(), other)
                async with app.bus:
                    await app.bus.send(PublishPost("hello"), idempotency_key="post-1")
                    await app.bus.send(PublishPost("hello"), idempotency_key="post-1")
            assert postgres.count(f'"{name}".{RECORDS}') == 1
        assert (app.runs, postgres.titles()) == (["hello"], ["hello"])

    @staticmethod
    @asynccontextmanager
    async def other_schema(postgres: InboxDatabase, dsn: str) -> AsyncIterator[str]:
        import psycopg
        from psycopg import sql

        name = f"{postgres.schema}_other"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))

    async def test_a_postgres_store_on_an_sqlite_outbox(
        self, postgres: InboxDatabase, sqlite_path: Path
    ) -> None:
        """The other driver: refused, nothing written."""
        async with postgres.store() as store:
            app = blog(SQLiteDatabase(sqlite_path).outbox(), store)
            async with app.bus:
                with pytest.raises(InboxConfigurationError, match="on the database object"):
                    await app.bus.send(PublishPost("hello"))
        assert app.runs == []


class TestStoreFunctions:
    """claim_in / complete_in on a transaction the caller holds."""

    @staticmethod
    async def claim_then_fail(outbox: Outbox, store: InboxStore) -> None:
        async with outbox.transaction() as tx:
            outcome = await tx.run(lambda c: store.claim_in(c, "s", "k", "f", 60.0))
            assert isinstance(outcome, Claimed)
            raise RuntimeError("roll back")

    async def test_rolled_back_claim_leaves_no_record(
        self, db: InboxDatabase, store: InboxStore
    ) -> None:
        """A claim in a transaction that rolls back is gone; a committed one is there."""
        outbox = db.outbox()
        async with outbox:
            with pytest.raises(RuntimeError, match="roll back"):
                await self.claim_then_fail(outbox, store)
            assert db.count(RECORDS) == 0
            async with outbox.transaction() as tx:
                claimed = await tx.run(lambda c: store.claim_in(c, "s", "k", "f", 60.0))
                assert isinstance(claimed, Claimed)
                await tx.run(lambda c: store.complete_in(c, "s", "k", claimed.token, "7", ttl=60))
        assert await store.claim("s", "k", "f", 60.0) == Completed("7")

    async def test_the_table_is_made_in_the_first_transaction(self, db: InboxDatabase) -> None:
        """A store made while a transaction is open gets its table in that transaction."""
        outbox = db.outbox()
        async with outbox, outbox.transaction() as tx:
            # The database is open already: nothing sets the store's table up before it.
            store: InboxStore = db.store()
            await tx.run(lambda c: store.claim_in(c, "s", "k", "f", 60.0))
        assert db.count(RECORDS) == 1

    async def test_postgres_wait_is_local_to_the_claim(self, postgres: InboxDatabase) -> None:
        """The caller's lock_timeout is back after the claim, in the same transaction."""
        outbox = postgres.outbox()
        async with outbox, postgres.store() as store, outbox.transaction() as tx:
            inbox: InboxStore = store
            await tx.execute("SET LOCAL lock_timeout = '7s'")
            await tx.run(lambda c: inbox.claim_in(c, "s", "k", "f", 60.0, wait=0.5))
            assert await tx.fetch("SHOW lock_timeout") == [("7s",)]
