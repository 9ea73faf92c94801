"""Shared by the inbox tests and their crash subprocess: a blog bus in inbox mode.

Its ``PublishPost`` handler runs in a unit of work, behind
``IdempotencyMiddleware(store, inbox=True)``: it inserts a post, publishes
``PostPublished`` (an outbox row), calls ``after_write`` (where a test makes it fail,
hang or wait), and returns the number of posts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import pytest

from messagebus import Context, MessageBus
from messagebus.idempotency import PostgresIdempotencyStore, SQLiteIdempotencyStore
from messagebus.middleware import IdempotencyMiddleware, UnitOfWorkMiddleware
from messagebus.outbox import PostgresOutbox, SQLiteOutbox
from messagebus.postgres import PostgresDatabase
from messagebus.sqlite import SQLiteDatabase
from tests.messages import PostId, PostPublished, PublishPost

HANDLER = "blog.publish"
"""The handler's name: the scope of its idempotency records."""

Store = SQLiteIdempotencyStore | PostgresIdempotencyStore
Outbox = SQLiteOutbox | PostgresOutbox


async def nothing() -> None:
    pass


@attrs.define
class Blog:
    """The bus, and the titles its handler was called with (once per run)."""

    bus: MessageBus
    runs: list[str]


def blog(
    outbox: Outbox,
    store: Store,
    *,
    after_write: Callable[[], Awaitable[None]] = nothing,
    **options: Any,
) -> Blog:
    """A bus on ``outbox`` whose PublishPost handler is idempotent in inbox mode."""
    bus = MessageBus(outbox=outbox)
    bus.declare(PostPublished)  # the relay delivers it here, to no subscriber
    runs: list[str] = []
    placeholder = "?" if isinstance(outbox, SQLiteOutbox) else "%s"

    async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
        runs.append(command.title)
        unit = ctx.unit_of_work
        await unit.execute(f"INSERT INTO posts (title) VALUES ({placeholder})", [command.title])
        ctx.publish(PostPublished(len(runs), command.title))
        await after_write()
        ((count,),) = await unit.fetch("SELECT count(*) FROM posts")
        return PostId(count)

    bus.handler(
        PublishPost,
        publish,
        name=HANDLER,
        middleware=[UnitOfWorkMiddleware(bus), IdempotencyMiddleware(store, inbox=True, **options)],
    )
    return Blog(bus, runs)


Database = SQLiteDatabase | PostgresDatabase


def database_at(kind: str, location: str, schema: str | None) -> Database:
    """A new database object on the SQLite file, or the DSN and schema."""
    if kind == "sqlite":
        return SQLiteDatabase(location)
    return PostgresDatabase(location, schema=schema)


@attrs.frozen
class InboxDatabase:
    """One test's SQLite file or PostgreSQL schema, holding a ``posts`` table."""

    kind: str
    location: str
    """The SQLite file, or a DSN whose search path is the test's schema."""
    schema: str | None
    query: Callable[[str], list[tuple[Any, ...]]]
    """Run a statement on a connection of its own (blocking); return its rows, if any."""
    shared: Database = attrs.field(init=False)
    """The test's database object: the outbox and the store are made from it."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "shared", database_at(self.kind, self.location, self.schema))

    def outbox(self) -> Outbox:
        return self.shared.outbox()

    def store(self, **options: Any) -> Store:
        return self.shared.idempotency(**options)

    def count(self, table: str) -> int:
        ((count,),) = self.query(f"SELECT count(*) FROM {table}")
        return int(count)

    def titles(self) -> list[str]:
        return [title for (title,) in self.query("SELECT title FROM posts ORDER BY id")]


def inbox_database(kind: str, request: pytest.FixtureRequest) -> InboxDatabase:
    """Make the test's database, with an empty ``posts`` table."""
    if kind == "sqlite":
        path: Path = request.getfixturevalue("sqlite_path")

        def query_sqlite(statement: str) -> list[tuple[Any, ...]]:
            with closing(sqlite3.connect(path)) as connection, connection:
                return connection.execute(statement).fetchall()

        query_sqlite("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")
        return InboxDatabase(kind, str(path), None, query_sqlite)
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema: str = request.getfixturevalue("postgres_schema")
    dsn = make_conninfo(request.getfixturevalue("postgres_dsn"), options=f"-c search_path={schema}")

    def query_postgres(statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    query_postgres("CREATE TABLE posts (id serial PRIMARY KEY, title text NOT NULL)")
    return InboxDatabase(kind, dsn, schema, query_postgres)
