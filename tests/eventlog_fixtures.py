"""Event log fixtures: a log per store kind on the test's database, and event helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any

import attrs
import pytest

from messagebus import Envelope, Event, MessageRegistry, WireCodec
from messagebus.eventlog import (
    SEQUENCE_HEADER,
    InMemoryEventLog,
    LogRecord,
    PostgresEventLog,
    SQLiteEventLog,
)
from messagebus.extension import EventLog
from tests.messages import PostPublished


@attrs.frozen
class ArticleWrittenV1(Event, name="blog.article.written", version=1):
    """The article event as an older build wrote it (not registered any more)."""

    title: str


@attrs.frozen
class ArticleWritten(Event, name="blog.article.written", version=2):
    title: str
    words: int


@attrs.frozen
class Unencodable(Event, name="test.unencodable"):
    value: object


def make_codec() -> WireCodec:
    registry = MessageRegistry()
    for message_type in (PostPublished, ArticleWritten, Unencodable):
        registry.add(message_type)
    registry.add_upcaster("blog.article.written", 1, lambda data: {**data, "words": 0})
    return WireCodec(registry)


CODEC = make_codec()
OpenLog = Callable[[], AbstractAsyncContextManager[Any]]
"""Opens a log object on the test's database (a new object each time, but for memory)."""


def event(n: int, stream: str | None = None, **headers: str) -> Envelope[PostPublished]:
    return Envelope(PostPublished(n, f"post {n}"), group_key=stream, headers=headers)


def positions(records: Sequence[LogRecord]) -> list[int]:
    return [record.position for record in records]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def open_log(request: pytest.FixtureRequest) -> OpenLog:
    kind = str(request.param)
    if kind == "memory":
        shared = InMemoryEventLog(codec=CODEC)  # one process, one log: "another" is it
        return lambda: nullcontext(shared)
    if kind == "sqlite":
        path: Path = request.getfixturevalue("sqlite_path")
        return lambda: SQLiteEventLog(path, codec=CODEC)
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("postgres_schema")
    return lambda: PostgresEventLog(dsn, codec=CODEC, schema=schema)


@pytest.fixture
async def log(open_log: OpenLog) -> AsyncIterator[EventLog]:
    async with open_log() as log:
        yield log


@pytest.fixture
async def other_log(open_log: OpenLog, log: EventLog) -> AsyncIterator[EventLog]:
    """A second log object on the same database, opened after ``log``."""
    async with open_log() as other:
        yield other


def check_gapless(records: Sequence[LogRecord]) -> None:
    """Positions 1..n in order; each stream's sequences 1..k, rising with position."""
    assert positions(records) == list(range(1, len(records) + 1))
    streams: dict[str, list[int]] = {}
    for record in records:
        if record.stream is not None:
            streams.setdefault(record.stream, []).append(record.sequence or 0)
            assert record.envelope.headers[SEQUENCE_HEADER] == str(record.sequence)
    for sequences in streams.values():
        assert sequences == list(range(1, len(sequences) + 1))


@attrs.frozen
class FollowersOnly(Event, name="test.unregistered"):
    post_id: int


def check_consecutive(records: Sequence[LogRecord]) -> None:
    first = records[0].position
    assert positions(records) == list(range(first, first + len(records)))


def post_ids(records: Sequence[LogRecord]) -> list[int]:
    """The post ids of records of PostPublished events."""
    messages = [record.envelope.message for record in records]
    return [message.post_id for message in messages if isinstance(message, PostPublished)]
