"""The unit of work on the bus: the caller's writes and its messages commit together."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

from messagebus import (
    BusStateError,
    ConfigurationError,
    Context,
    EncodeError,
    Event,
    MessageBus,
    Worker,
    current_unit_of_work,
)
from messagebus.eventlog import SEQUENCE_HEADER, InMemoryEventLog
from messagebus.middleware import UnitOfWorkMiddleware
from messagebus.sqlite import SQLiteDatabase
from messagebus.transports.memory import InMemoryTransport
from tests.messages import IndexPost, PostId, PostPublished, PublishPost
from tests.outbox_support import Database, database

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    return database(str(request.param), request)


class Recorder:
    """Subscribers that record what they see and signal each arrival."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.arrived = anyio.Event()

    async def __call__(self, message: Any, ctx: Context[Any]) -> None:
        self.seen.append((message, ctx.envelope))
        self.arrived.set()
        self.arrived = anyio.Event()

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.seen) < count:
                await self.arrived.wait()


def blog(db: Database, **options: Any) -> tuple[MessageBus, Recorder]:
    bus = MessageBus(outbox=db.make(), service="blog", **options)
    recorder = Recorder()
    bus.subscriber(PostPublished, recorder, name="record")
    return bus, recorder


class TestUnitOfWork:
    """bus.unit_of_work(): one transaction for the caller's SQL and its messages."""

    async def test_commit_delivers_after_the_writes(self, db: Database) -> None:
        """The post is stored and the event delivered once the block has committed."""
        bus, recorder = blog(db)
        async with bus:
            async with bus.unit_of_work() as uow:
                await uow.execute(db.insert_post(), ["Hello"])
                uow.publish(PostPublished(1, "Hello"), headers={"tenant": "a"})
                assert current_unit_of_work() is uow
                assert recorder.seen == []  # nothing leaves before the commit
            assert current_unit_of_work() is None
            await recorder.wait_for(1)
        assert db.titles() == ["Hello"]
        ((event, envelope),) = recorder.seen
        assert event == PostPublished(1, "Hello")
        assert dict(envelope.headers) == {"tenant": "a"}

    async def test_rollback_writes_and_sends_nothing(self, db: Database) -> None:
        """An exception in the block rolls back the post and the event."""
        bus, recorder = blog(db)

        async def change_mind() -> None:
            async with bus.unit_of_work() as uow:
                await uow.execute(db.insert_post(), ["Hello"])
                uow.publish(PostPublished(1, "Hello"))
                raise RuntimeError("changed my mind")

        async with bus:
            with pytest.raises(RuntimeError, match="changed my mind"):
                await change_mind()
            assert bus.relay is not None
            assert await bus.relay.flush() == 0
        assert db.titles() == []
        assert recorder.seen == []

    async def test_messages_keep_their_order(self, db: Database) -> None:
        """Events committed in one unit of work arrive in the order they were given."""
        bus, recorder = blog(db)
        async with bus:
            async with bus.unit_of_work() as uow:
                for post in range(5):
                    uow.publish(PostPublished(post, f"post {post}"), group_key="blog")
            await recorder.wait_for(5)
        assert [event.post_id for event, _ in recorder.seen] == [0, 1, 2, 3, 4]

    async def test_fetch_and_run_join_the_transaction(self, db: Database) -> None:
        """Reads see the transaction's own uncommitted writes; run() gets the connection."""
        bus, _ = blog(db)
        async with bus, bus.unit_of_work() as uow:
            await uow.execute(db.insert_post(), ["draft"])
            assert await uow.fetch("SELECT title FROM posts") == [("draft",)]
            count = await uow.run(
                lambda connection: connection.execute("SELECT count(*) FROM posts").fetchone()
            )
            assert count == (1,)

    async def test_unencodable_message_rolls_back(self, db: Database) -> None:
        """A message with no JSON form fails the commit: the writes roll back too."""
        bus, _ = blog(db)
        bus.declare(Opaque)

        async def publish_opaque() -> None:
            async with bus.unit_of_work() as uow:
                await uow.execute(db.insert_post(), ["Hello"])
                uow.publish(Opaque(object()))

        async with bus:
            with pytest.raises(EncodeError):
                await publish_opaque()
        assert db.titles() == []

    async def test_a_command_is_sent_after_commit(self, db: Database) -> None:
        """uow.send() runs the command's handler once the transaction has committed."""
        bus, _ = blog(db)
        indexed = anyio.Event()
        bus.handler(IndexPost, lambda command: indexed.set())
        async with bus:
            async with bus.unit_of_work() as uow:
                uow.send(IndexPost(1))
            with anyio.fail_after(10):
                await indexed.wait()

    async def test_needs_an_outbox(self) -> None:
        """A bus without an outbox refuses to open a unit of work."""
        async with MessageBus() as bus:
            with pytest.raises(BusStateError, match="no outbox"):
                async with bus.unit_of_work():
                    pass  # pragma: no cover


@attrs.frozen
class Opaque(Event, name="test.opaque.happened"):
    thing: object


class TestHandlersInAUnitOfWork:
    """UnitOfWorkMiddleware: a handler's writes and follow-ups commit or roll back together."""

    def build(self, db: Database, fail: bool = False) -> tuple[MessageBus, Recorder]:
        bus, recorder = blog(db)
        bus.add_middleware(UnitOfWorkMiddleware(bus))

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            await ctx.unit_of_work.execute(db.insert_post(), [command.title])
            ctx.publish(PostPublished(1, command.title))
            if fail:
                raise RuntimeError("disk full")
            return PostId(1)

        return bus, recorder

    async def test_follow_ups_go_through_the_outbox(self, db: Database) -> None:
        """The handler answers; its event is delivered from the outbox after commit."""
        bus, recorder = self.build(db)
        async with bus:
            assert await bus.send(PublishPost("Hello")) == PostId(1)
            await recorder.wait_for(1)
        assert db.titles() == ["Hello"]
        ((event, envelope),) = recorder.seen
        assert event == PostPublished(1, "Hello")
        assert envelope.causation_id is not None

    async def test_a_failing_handler_announces_nothing(self, db: Database) -> None:
        """The handler raised: no post, no event."""
        bus, recorder = self.build(db, fail=True)
        async with bus:
            with pytest.raises(RuntimeError, match="disk full"):
                await bus.send(PublishPost("Hello"))
            assert bus.relay is not None
            assert await bus.relay.flush() == 0
        assert db.titles() == []
        assert recorder.seen == []

    async def test_unit_of_work_outside_one_is_refused(self) -> None:
        """ctx.unit_of_work in a handler that runs in none says how to get one."""
        bus = MessageBus()

        @bus.handler(IndexPost)
        async def index(command: IndexPost, ctx: Context[IndexPost]) -> None:
            ctx.unit_of_work  # noqa: B018  # the property raises

        with pytest.raises(BusStateError, match="does not run in a unit of work"):
            await bus.send(IndexPost(1))


class TestOutboxOnATransport:
    """With a transport, the relay hands committed rows to it; a worker delivers them."""

    async def test_rows_reach_the_subscriber_through_the_queue(self, db: Database) -> None:
        """Outbox -> topic -> this service's queue -> worker -> subscriber."""
        bus, recorder = blog(db, transport=InMemoryTransport())
        async with bus:
            await bus.provision()
            worker = Worker(bus)
            async with anyio.create_task_group() as tasks:
                await tasks.start(worker.run)
                async with bus.unit_of_work() as uow:
                    uow.publish(PostPublished(1, "Hello"))
                await recorder.wait_for(1)
                worker.stop()
        assert worker.acked == 1


class TestEventLog:
    """Every event the service publishes is appended to the log before delivery."""

    async def test_in_process_publish_is_logged(self) -> None:
        """publish() and follow-ups append; the subscriber sees the stream sequence."""
        log = InMemoryEventLog()
        bus = MessageBus(event_log=log)
        assert log.codec is bus.codec  # lent by the bus
        recorder = Recorder()
        bus.subscriber(PostPublished, recorder, name="record")
        await bus.publish(PostPublished(1, "a"), group_key="post-1")
        await bus.publish(PostPublished(1, "b"), group_key="post-1")
        assert [record.position for record in await log.read()] == [1, 2]
        assert [envelope.headers[SEQUENCE_HEADER] for _, envelope in recorder.seen] == ["1", "2"]

    async def test_unit_of_work_appends_in_its_transaction(self, sqlite_path: Any) -> None:
        """Committed: in the log and delivered; rolled back: in neither."""
        database = SQLiteDatabase(sqlite_path)
        log = database.event_log()
        bus = MessageBus(outbox=database.outbox(), event_log=log)
        recorder = Recorder()
        bus.subscriber(PostPublished, recorder, name="record")

        async def roll_back() -> None:
            async with bus.unit_of_work() as uow:
                uow.publish(PostPublished(1, "rolled back"), group_key="post-1")
                raise RuntimeError

        async with bus:
            with pytest.raises(RuntimeError):
                await roll_back()
            async with bus.unit_of_work() as uow:
                uow.publish(PostPublished(1, "kept"), group_key="post-1")
            await recorder.wait_for(1)
            records = await log.read()
        assert [record.envelope.message for record in records] == [PostPublished(1, "kept")]
        ((_, envelope),) = recorder.seen
        assert envelope.headers[SEQUENCE_HEADER] == "1"

    def test_an_outbox_needs_an_sql_log(self, sqlite_path: Any) -> None:
        """A memory log cannot join the outbox's transaction: refused at construction."""
        from messagebus.outbox import SQLiteOutbox

        with pytest.raises(ConfigurationError, match="SQL log on the outbox's database"):
            MessageBus(outbox=SQLiteOutbox(sqlite_path), event_log=InMemoryEventLog())
