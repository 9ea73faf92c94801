"""Every store of ours passes the public store conformance checks (messagebus.testing).

Each check runs on a new harness: a new SQLite file or PostgreSQL schema (the fixtures
of tests/databases.py: the real server, failing when CI is set), or a new in-memory
store. Stores are made alone (a connection or pool of their own) and from the backend's
database object (one connection or pool shared by every store made from it). The
outbox has no in-memory store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, TypeVar

import pytest

from messagebus import WireCodec
from messagebus.dead_letters import (
    InMemoryDeadLetterStore,
    PostgresDeadLetterStore,
    SQLiteDeadLetterStore,
)
from messagebus.eventlog import InMemoryEventLog, PostgresEventLog, SQLiteEventLog
from messagebus.idempotency import (
    InMemoryIdempotencyStore,
    PostgresIdempotencyStore,
    SQLiteIdempotencyStore,
)
from messagebus.outbox import PostgresOutbox, SQLiteOutbox
from messagebus.postgres import PostgresDatabase
from messagebus.sqlite import SQLiteDatabase
from messagebus.testing import (
    DEAD_LETTER_CHECKS,
    EVENT_LOG_CHECKS,
    IDEMPOTENCY_CHECKS,
    OUTBOX_CHECKS,
    PROCESS_CHECKS,
    DeadLetterCheck,
    DeadLetterHarness,
    EventLogCheck,
    EventLogHarness,
    IdempotencyCheck,
    IdempotencyHarness,
    NotApplicable,
    OutboxCheck,
    OutboxHarness,
    ProcessCheck,
    ProcessHarness,
    ProcessStores,
)

pytestmark = pytest.mark.anyio

Clock = Callable[[], float]
_S = TypeVar("_S")


def in_memory(make: Callable[[Any], _S]) -> Callable[[Any], AbstractAsyncContextManager[_S]]:
    """Open one in-memory store, made on the first call's argument, for every call."""
    made: list[_S] = []

    def open_store(argument: Any) -> AbstractAsyncContextManager[_S]:
        if not made:
            made.append(make(argument))
        return nullcontext(made[0])

    return open_store


class Backend:
    """Where one test's stores live: a kind of store, on the test's own database."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.location: str
        self.schema: str | None = None
        if kind.startswith("sqlite"):
            self.location = str(request.getfixturevalue("sqlite_path"))
        elif kind.startswith("postgres"):
            self.location = request.getfixturevalue("postgres_dsn")
            self.schema = request.getfixturevalue("postgres_schema")
        self.sqlite = SQLiteDatabase(self.location) if kind == "sqlite-database" else None
        self.postgres = (
            PostgresDatabase(self.location, schema=self.schema)
            if kind == "postgres-database"
            else None
        )

    def idempotency(self, clock: Clock) -> SQLiteIdempotencyStore | PostgresIdempotencyStore:
        if self.sqlite is not None:
            return self.sqlite.idempotency(clock=clock)
        if self.postgres is not None:
            return self.postgres.idempotency(clock=clock)
        if self.kind == "sqlite":
            return SQLiteIdempotencyStore(self.location, clock=clock)
        return PostgresIdempotencyStore(self.location, schema=self.schema, clock=clock)

    def outbox(self, clock: Clock) -> SQLiteOutbox | PostgresOutbox:
        if self.sqlite is not None:
            return self.sqlite.outbox(clock=clock)
        if self.postgres is not None:
            return self.postgres.outbox(clock=clock)
        if self.kind == "sqlite":
            return SQLiteOutbox(self.location, clock=clock)
        return PostgresOutbox(self.location, schema=self.schema, clock=clock)

    def dead_letters(self) -> SQLiteDeadLetterStore | PostgresDeadLetterStore:
        if self.sqlite is not None:
            return self.sqlite.dead_letters()
        if self.postgres is not None:
            return self.postgres.dead_letters()
        if self.kind == "sqlite":
            return SQLiteDeadLetterStore(self.location)
        return PostgresDeadLetterStore(self.location, schema=self.schema)

    def event_log(self, codec: WireCodec) -> SQLiteEventLog | PostgresEventLog:
        if self.sqlite is not None:
            return self.sqlite.event_log(codec=codec)
        if self.postgres is not None:
            return self.postgres.event_log(codec=codec)
        if self.kind == "sqlite":
            return SQLiteEventLog(self.location, codec=codec)
        return PostgresEventLog(self.location, codec=codec, schema=self.schema)

    @asynccontextmanager
    async def process_stores(self, clock: Clock) -> AsyncIterator[ProcessStores]:
        """The stores of a new database object on the test's database (another process)."""
        database: SQLiteDatabase | PostgresDatabase
        if self.kind.startswith("sqlite"):
            database = SQLiteDatabase(self.location)
        else:
            database = PostgresDatabase(self.location, schema=self.schema)
        async with database:
            yield ProcessStores(
                database.processes(clock=clock),
                database.outbox(clock=clock),
                database.idempotency(clock=clock),
            )

    async def aclose(self) -> None:
        for database in (self.sqlite, self.postgres):
            if database is not None:
                await database.aclose()


PERSISTENT = ["sqlite", "sqlite-database", "postgres", "postgres-database"]


@pytest.fixture
async def backend(request: pytest.FixtureRequest) -> Any:
    backend = Backend(str(request.param), request)
    try:
        yield backend
    finally:
        await backend.aclose()


def by_name(check: object) -> str:
    return str(getattr(check, "__name__", check))


async def run(check: Callable[[Any], Any], harness: object) -> None:
    try:
        await check(harness)
    except NotApplicable as reason:
        pytest.skip(str(reason))


class TestIdempotencyStores:
    """The memory, SQLite and PostgreSQL idempotency stores pass every check."""

    @pytest.mark.parametrize("backend", ["memory", *PERSISTENT], indirect=True)
    @pytest.mark.parametrize("check", IDEMPOTENCY_CHECKS, ids=by_name)
    async def test_check(self, backend: Backend, check: IdempotencyCheck) -> None:
        """The store keeps the part of the contract the check names."""
        if backend.kind == "memory":
            harness = IdempotencyHarness(in_memory(lambda c: InMemoryIdempotencyStore(clock=c)))
        else:
            harness = IdempotencyHarness(backend.idempotency)
        await run(check, harness)


class TestOutboxStores:
    """The SQLite and PostgreSQL outboxes pass every check."""

    @pytest.mark.parametrize("backend", PERSISTENT, indirect=True)
    @pytest.mark.parametrize("check", OUTBOX_CHECKS, ids=by_name)
    async def test_check(self, backend: Backend, check: OutboxCheck) -> None:
        """The store keeps the part of the contract the check names."""
        await run(check, OutboxHarness(backend.outbox))


class TestDeadLetterStores:
    """The memory, SQLite and PostgreSQL dead-letter stores pass every check."""

    @pytest.mark.parametrize("backend", ["memory", *PERSISTENT], indirect=True)
    @pytest.mark.parametrize("check", DEAD_LETTER_CHECKS, ids=by_name)
    async def test_check(self, backend: Backend, check: DeadLetterCheck) -> None:
        """The store keeps the part of the contract the check names."""
        if backend.kind == "memory":
            store = InMemoryDeadLetterStore()
            harness = DeadLetterHarness(lambda: nullcontext(store))
        else:
            harness = DeadLetterHarness(backend.dead_letters)
        await run(check, harness)


class TestEventLogs:
    """The memory, SQLite and PostgreSQL event logs pass every check."""

    @pytest.mark.parametrize("backend", ["memory", *PERSISTENT], indirect=True)
    @pytest.mark.parametrize("check", EVENT_LOG_CHECKS, ids=by_name)
    async def test_check(self, backend: Backend, check: EventLogCheck) -> None:
        """The log keeps the part of the contract the check names."""
        if backend.kind == "memory":
            harness = EventLogHarness(in_memory(lambda codec: InMemoryEventLog(codec=codec)))
        else:
            harness = EventLogHarness(backend.event_log)
        await run(check, harness)


class TestProcessStores:
    """The SQLite and PostgreSQL process stores pass every check (on the outbox's database)."""

    @pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
    @pytest.mark.parametrize("check", PROCESS_CHECKS, ids=by_name)
    async def test_check(self, backend: Backend, check: ProcessCheck) -> None:
        """The store keeps the part of the contract the check names."""
        await run(check, ProcessHarness(backend.process_stores))
