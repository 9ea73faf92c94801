from __future__ import annotations

import inspect
import random
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from messagebus import Envelope
from messagebus._errors import DecodeError, EncodeError, MessageKindError
from messagebus.eventlog import (
    SEQUENCE_HEADER,
    InMemoryEventLog,
    LogRecord,
    PostgresEventLog,
    SQLiteEventLog,
)
from messagebus.extension import EventLog
from tests.eventlog_fixtures import (
    CODEC,
    ArticleWritten,
    ArticleWrittenV1,
    FollowersOnly,
    Unencodable,
    check_consecutive,
    check_gapless,
    event,
    positions,
    post_ids,
)
from tests.messages import PublishPost

pytestmark = pytest.mark.anyio


class TestEventLogContract:
    """Every log appends, numbers and reads alike (memory, SQLite, PostgreSQL)."""

    async def test_append_numbers_positions_and_stream_sequences(self, log: EventLog) -> None:
        """Positions count from 1 over the log; sequences count from 1 per stream."""
        records = await log.append([event(1, "a"), event(2, "b"), event(3, "a")])
        records = [*records, *await log.append([event(4, "a")])]
        assert [(r.position, r.stream, r.sequence) for r in records] == [
            (1, "a", 1),
            (2, "b", 1),
            (3, "a", 2),
            (4, "a", 3),
        ]
        assert await log.last_position() == 4

    async def test_reads_return_what_append_returned(self, log: EventLog) -> None:
        """Read records equal the appended ones: envelope, header, time to the microsecond."""
        appended = await log.append([event(1, "a", trace="t-1"), event(2)])
        read = await log.read()
        assert read == appended
        assert read[0].envelope.headers == {"trace": "t-1", SEQUENCE_HEADER: "1"}
        assert read[0].recorded_at.utcoffset() == timedelta(0)

    async def test_an_event_without_group_key_is_in_no_stream(self, log: EventLog) -> None:
        """No group_key: no stream, no sequence, no header, and no stream read finds it."""
        (record,) = await log.append([event(1)])
        assert (record.stream, record.sequence) == (None, None)
        assert SEQUENCE_HEADER not in record.envelope.headers
        assert await log.read_stream("") == ()

    async def test_a_stale_sequence_header_is_replaced(self, log: EventLog) -> None:
        """The log sets the header from its own numbering, whatever the envelope said."""
        (record,) = await log.append([event(1, "a", **{SEQUENCE_HEADER: "99"})])
        assert record.envelope.headers[SEQUENCE_HEADER] == "1"
        assert (await log.read())[0].envelope.headers[SEQUENCE_HEADER] == "1"

    async def test_read_pages_by_position(self, log: EventLog) -> None:
        """from_position is inclusive; limit caps the page; past the end is empty."""
        await log.append([event(n, "s" if n % 2 else None) for n in range(1, 11)])
        assert positions(await log.read(4, 3)) == [4, 5, 6]
        assert positions(await log.read(9)) == [9, 10]
        assert await log.read(11) == ()
        assert await log.read(1, 0) == ()

    async def test_read_stream_pages_by_sequence(self, log: EventLog) -> None:
        """A stream's records in sequence, from from_sequence, up to limit."""
        await log.append([event(n, "odd" if n % 2 else "even") for n in range(1, 11)])
        odd = await log.read_stream("odd")
        assert [r.sequence for r in odd] == [1, 2, 3, 4, 5]
        assert post_ids(odd) == [1, 3, 5, 7, 9]
        assert [r.sequence for r in await log.read_stream("odd", 2, 2)] == [2, 3]
        assert await log.read_stream("odd", 1, 0) == ()
        assert await log.read_stream("none") == ()

    async def test_bad_read_arguments_are_refused(self, log: EventLog) -> None:
        """Positions and sequences start at 1; limits are not negative."""
        with pytest.raises(ValueError, match="start at 1"):
            await log.read(0)
        with pytest.raises(ValueError, match="negative"):
            await log.read(1, -1)
        with pytest.raises(ValueError, match="start at 1"):
            await log.read_stream("a", 0)

    async def test_an_empty_append_stores_nothing(self, log: EventLog) -> None:
        """Appending no envelopes returns no records and uses no position."""
        assert await log.append([]) == ()
        assert await log.last_position() == 0

    async def test_commands_are_refused_and_nothing_is_stored(self, log: EventLog) -> None:
        """A command in a batch refuses the whole batch."""
        with pytest.raises(MessageKindError, match="events only"):
            await log.append([event(1), Envelope(PublishPost("x"))])
        assert await log.read() == ()

    async def test_an_unencodable_event_stores_nothing(self, log: EventLog) -> None:
        """An encoding failure anywhere in a batch leaves the log as it was."""
        with pytest.raises(EncodeError):
            await log.append([event(1), Envelope(Unencodable(object()))])
        assert await log.last_position() == 0
        assert positions(await log.append([event(2)])) == [1]

    async def test_old_versions_read_back_as_the_current_one(self, log: EventLog) -> None:
        """A v1 event appended by an older build is read as v2, through the upcaster."""
        await log.append([Envelope(ArticleWrittenV1("Hello"), group_key="article-1")])
        (record,) = await log.read()
        assert record.envelope.message == ArticleWritten("Hello", 0)
        assert record.envelope.message_version == 2
        assert (await log.read_stream("article-1"))[0].envelope.message == record.envelope.message

    async def test_a_type_the_codec_does_not_know_fails_the_read(self, log: EventLog) -> None:
        """Reading a body of an unregistered type raises DecodeError, naming it."""
        await log.append([Envelope(FollowersOnly(1))])
        with pytest.raises(DecodeError, match=r"test\.unregistered"):
            await log.read()

    async def test_concurrent_appenders_keep_positions_gapless(
        self, log: EventLog, other_log: EventLog
    ) -> None:
        """Eight tasks over two log objects append 80 events; numbering has no gap or twin."""
        rng = random.Random(8)
        sent: list[str] = []

        async def appender(worker: int) -> None:
            target = log if worker % 2 else other_log
            for n in range(5):
                batch = [
                    event(worker * 100 + n, rng.choice("abc")) for _ in range(rng.randint(1, 3))
                ]
                sent.extend(e.message_id for e in batch)
                returned = await target.append(batch)
                check_consecutive(returned)

        async with anyio.create_task_group() as tasks:
            for worker in range(8):
                tasks.start_soon(appender, worker)
        records = await log.read(1, 10_000)
        check_gapless(records)
        assert sorted(r.envelope.message_id for r in records) == sorted(sent)

    async def test_a_batch_takes_consecutive_positions(self, log: EventLog) -> None:
        """The events of one append sit next to each other, in the order given."""
        await log.append([event(0, "x")])
        records = await log.append([event(n, "x") for n in range(1, 6)])
        check_consecutive(records)
        assert post_ids(await log.read(2)) == [1, 2, 3, 4, 5]

    async def test_checkpoints_load_save_reset(self, log: EventLog) -> None:
        """A name's position is None until saved, then the last saved, then None again."""
        checkpoints = log.checkpoints
        assert await checkpoints.load("projection") is None
        await checkpoints.save("projection", 3)
        await checkpoints.save("projection", 7)
        await checkpoints.save("other", 1)
        assert await checkpoints.load("projection") == 7
        await checkpoints.reset("projection")
        assert await checkpoints.load("projection") is None
        assert await checkpoints.load("other") == 1


class TestAppendOnly:
    """No log offers a way to change or remove what was appended."""

    @pytest.mark.parametrize(
        "log_type", [EventLog, InMemoryEventLog, SQLiteEventLog, PostgresEventLog]
    )
    def test_there_is_no_update_or_delete_method(self, log_type: type) -> None:
        """The public methods are appends, reads, subscriptions and lifecycle only."""
        public = {name for name, _ in inspect.getmembers(log_type) if not name.startswith("_")}
        allowed = {
            "append",
            "append_in",
            "read",
            "read_stream",
            "last_position",
            "subscribe",
            "notify_appended",
            "checkpoints",
            "codec",
            "lend_codec",
            "aclose",
            "database",  # which database object the log is on (SQL logs)
        }
        assert public <= allowed, public - allowed
        assert {"append", "read", "read_stream", "subscribe"} <= public


class TestSQLiteAppendIn:
    """append_in joins the caller's SQLite transaction: it commits or rolls back with it."""

    async def test_rolled_back_appends_leave_no_trace(self, sqlite_path: Path) -> None:
        """A rollback takes the events and their positions back; a commit keeps them."""
        async with SQLiteEventLog(sqlite_path, codec=CODEC) as log:

            def unit_of_work(commit: bool) -> Sequence[LogRecord]:
                with closing(sqlite3.connect(sqlite_path, isolation_level=None)) as connection:
                    connection.execute("BEGIN IMMEDIATE")
                    records = log.append_in(connection, [event(1, "a"), event(2, "a")])
                    connection.execute("COMMIT" if commit else "ROLLBACK")
                    return records

            await anyio.to_thread.run_sync(unit_of_work, False)
            assert await log.read() == ()
            committed = await anyio.to_thread.run_sync(unit_of_work, True)
            assert positions(committed) == [1, 2]
            assert await log.read() == committed
            with closing(sqlite3.connect(":memory:")) as connection:
                assert log.append_in(connection, []) == ()

    async def test_notify_appended_wakes_subscribers_after_the_commit(
        self, sqlite_path: Path
    ) -> None:
        """The unit of work's path: append_in, commit, then notify_appended; no polling."""
        async with SQLiteEventLog(sqlite_path, codec=CODEC) as log:
            subscription = log.subscribe(poll_interval=3600)

            def unit_of_work() -> None:
                with closing(sqlite3.connect(sqlite_path, isolation_level=None)) as connection:
                    connection.execute("BEGIN IMMEDIATE")
                    log.append_in(connection, [event(1, "a")])
                    connection.execute("COMMIT")

            async def commit_then_notify() -> None:
                await anyio.to_thread.run_sync(unit_of_work)
                log.notify_appended()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(commit_then_notify)
                with anyio.fail_after(10):
                    record = await subscription.__anext__()
            assert record.position == 1


class TestPostgresAppendIn:
    """append_in joins the caller's PostgreSQL transaction: it commits or rolls back with it."""

    async def test_rolled_back_appends_leave_no_trace(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """A rollback takes the events and their positions back; a commit keeps them."""
        import psycopg

        async with PostgresEventLog(postgres_dsn, codec=CODEC, schema=postgres_schema) as log:

            def unit_of_work(commit: bool) -> Sequence[LogRecord]:
                with psycopg.connect(postgres_dsn) as connection:
                    records = log.append_in(connection, [event(1, "a"), event(2, "a")])
                    if not commit:
                        connection.rollback()
                    return records

            await anyio.to_thread.run_sync(unit_of_work, False)
            assert await log.read() == ()
            committed = await anyio.to_thread.run_sync(unit_of_work, True)
            assert positions(committed) == [1, 2]
            assert await log.read() == committed
            with psycopg.connect(postgres_dsn) as connection:
                assert log.append_in(connection, []) == ()

    async def test_a_borrowed_pool_is_used_as_is(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """Autocommit connections with dict rows still append atomically and read back."""
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(
            postgres_dsn,
            min_size=1,
            max_size=2,
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
        )
        await anyio.to_thread.run_sync(pool.open)
        try:
            async with PostgresEventLog(pool, codec=CODEC, schema=postgres_schema) as log:
                appended = await log.append([event(1, "a"), event(2)])
                assert await log.read() == appended
                assert await log.read_stream("a") == appended[:1]
                await log.checkpoints.save("p", 2)
                assert await log.checkpoints.load("p") == 2
                assert await log.last_position() == 2
            assert not pool.closed
        finally:
            await anyio.to_thread.run_sync(pool.close)
