"""Shared by the outbox tests: databases, a fake clock, messages and a recording sink."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import pytest

from messagebus.outbox import DeliveryFailure, OutboxMessage, PostgresOutbox, SQLiteOutbox
from messagebus.transports import Destination

T0 = 1_714_564_800.0

Outbox = SQLiteOutbox | PostgresOutbox


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
    """One test's SQLite file or PostgreSQL schema, with a ``posts`` table for user writes."""

    kind: str
    make: Callable[..., Outbox]
    """Make an outbox on this database; keyword arguments go to the store."""
    query: Callable[[str], list[tuple[Any, ...]]]
    """Run a statement directly, outside any store (blocking); return its rows, if any."""
    placeholder: str
    location: str
    """The SQLite file's path, or the PostgreSQL DSN (search path on the test's schema)."""

    def insert_post(self) -> str:
        return f"INSERT INTO posts (title) VALUES ({self.placeholder})"

    def titles(self) -> list[str]:
        return [title for (title,) in self.query("SELECT title FROM posts ORDER BY title")]


def database(kind: str, request: pytest.FixtureRequest) -> Database:
    if kind == "sqlite":
        path: Path = request.getfixturevalue("sqlite_path")

        def query_sqlite(statement: str) -> list[tuple[Any, ...]]:
            with closing(sqlite3.connect(path)) as connection, connection:
                return connection.execute(statement).fetchall()

        query_sqlite("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")
        return Database(kind, lambda **kw: SQLiteOutbox(path, **kw), query_sqlite, "?", str(path))
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema: str = request.getfixturevalue("postgres_schema")
    # The user's tables live in the test's schema too: their SQL names them unqualified.
    dsn = make_conninfo(request.getfixturevalue("postgres_dsn"), options=f"-c search_path={schema}")

    def query_postgres(statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    query_postgres("CREATE TABLE posts (id serial PRIMARY KEY, title text NOT NULL)")
    return Database(
        kind,
        lambda **kw: PostgresOutbox(dsn, schema=schema, **kw),
        query_postgres,
        "%s",
        dsn,
    )


def message(
    number: int, *, group: str | None = None, destination: Destination | None = None
) -> OutboxMessage:
    """Message ``number``, its body ``b"body-<number>"``."""
    return OutboxMessage(
        id=f"m-{number:04d}",
        destination=destination or Destination.topic("blog"),
        body=f"body-{number}".encode(),
        group_key=group,
        created_at=T0,
    )


@attrs.define
class Sink:
    """A Deliver that records what it gets; ``fail`` maps ids to the failure to report."""

    delivered: list[OutboxMessage] = attrs.Factory(list)
    calls: int = 0
    fail: dict[str, DeliveryFailure] = attrs.Factory(dict)

    async def __call__(self, messages: Sequence[OutboxMessage]) -> Sequence[DeliveryFailure]:
        self.calls += 1
        failures = [self.fail[m.id] for m in messages if m.id in self.fail]
        failed = {failure.message_id for failure in failures}
        self.delivered.extend(m for m in messages if m.id not in failed)
        return failures

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.delivered]
