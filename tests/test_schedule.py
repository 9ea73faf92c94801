"""Scheduled messages on the bus: bus.schedule, ctx.schedule, uow.schedule, cancel_scheduled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import attrs
import pytest

from messagebus import (
    DUE_HEADER,
    ArgumentTypeError,
    ConfigurationError,
    Context,
    InvalidArgumentError,
    MessageBus,
    MessageKindError,
    NoHandlerError,
    testing,
)
from messagebus.middleware import UnitOfWorkMiddleware
from messagebus.postgres import PostgresDatabase
from messagebus.sqlite import SQLiteDatabase
from messagebus.testing import replace_handler
from tests.messages import IndexPost, PostPublished
from tests.outbox_support import T0, Database, FakeClock, database

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    return database(str(request.param), request)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@attrs.frozen
class Remind(IndexPost, name="test.schedule.remind"):
    """A command scheduled by a handler."""


class Shop:
    """A bus on the test's database with a fake clock, recording what its handlers see."""

    def __init__(self, db: Database, stores_clock: Any, **options: Any) -> None:
        self.clock = stores_clock
        self.bus = MessageBus(outbox=db.make(clock=stores_clock), service="shop", **options)
        self.seen: list[tuple[Any, dict[str, str], str]] = []
        self.arrived = anyio.Event()
        self.bus.handler(IndexPost, self.record)
        self.bus.subscriber(PostPublished, self.record, name="record")

    async def record(self, message: Any, ctx: Context[Any]) -> None:
        envelope = ctx.envelope
        self.seen.append((message, dict(envelope.headers), envelope.message_id))
        self.arrived.set()
        self.arrived = anyio.Event()

    async def wait_for(self, count: int) -> None:
        """Wait until ``count`` messages were handled (the running bus's relay delivers)."""
        with anyio.fail_after(30):
            while len(self.seen) < count:
                await self.arrived.wait()

    @property
    def messages(self) -> list[Any]:
        return [message for message, _, _ in self.seen]

    async def at(self, seconds: float) -> int:
        """Move the clock to T0 + ``seconds`` and let the relay deliver what is due."""
        self.clock.now = T0 + seconds
        assert self.bus.relay is not None
        return await self.bus.relay.flush()


class TestBusSchedule:
    """await bus.schedule(message, at=... | delay=...): delivered when due, not before."""

    async def test_delay_is_delivered_when_due(self, db: Database, clock: FakeClock) -> None:
        """A command scheduled 60 s ahead runs at 60 s, with its id and due time."""
        shop = Shop(db, clock)
        schedule_id = await shop.bus.schedule(IndexPost(1), delay=60)
        assert await shop.at(59.999) == 0
        assert shop.seen == []
        assert await shop.at(60) == 1
        ((message, headers, message_id),) = shop.seen
        assert message == IndexPost(1)
        assert message_id == schedule_id
        assert float(headers[DUE_HEADER]) == T0 + 60

    async def test_a_timedelta_and_an_aware_datetime(self, db: Database, clock: FakeClock) -> None:
        """delay= takes a timedelta; at= an aware datetime, in any time zone."""
        shop = Shop(db, clock)
        await shop.bus.schedule(IndexPost(1), delay=timedelta(minutes=1))
        when = datetime.fromtimestamp(T0 + 30, tz=UTC).astimezone(timezone(timedelta(hours=5)))
        await shop.bus.schedule(IndexPost(2), at=when)
        assert await shop.at(30) == 1
        assert await shop.at(60) == 1
        assert shop.messages == [IndexPost(2), IndexPost(1)]

    async def test_a_time_in_the_past_is_due_now(self, db: Database, clock: FakeClock) -> None:
        """at= yesterday is delivered at the next flush."""
        shop = Shop(db, clock)
        await shop.bus.schedule(IndexPost(1), at=datetime.fromtimestamp(T0 - 86400, tz=UTC))
        assert await shop.at(0) == 1
        assert shop.messages == [IndexPost(1)]

    async def test_an_event_reaches_every_subscriber_when_due(
        self, db: Database, clock: FakeClock
    ) -> None:
        """A scheduled event is published when due."""
        shop = Shop(db, clock)
        await shop.bus.schedule(PostPublished(1, "later"), delay=5)
        assert await shop.at(4) == 0
        assert await shop.at(5) == 1
        assert shop.messages == [PostPublished(1, "later")]

    async def test_two_schedules_are_delivered_in_due_order(
        self, db: Database, clock: FakeClock
    ) -> None:
        """Scheduled later but due sooner comes first; equal due times keep their order."""
        shop = Shop(db, clock)
        await shop.bus.schedule(IndexPost(1), delay=20)
        await shop.bus.schedule(IndexPost(2), delay=10)
        await shop.bus.schedule(IndexPost(3), delay=20)
        await shop.at(10)
        await shop.at(20)
        assert shop.messages == [IndexPost(2), IndexPost(1), IndexPost(3)]

    async def test_the_running_bus_delivers_a_schedule_made_elsewhere(
        self, db: Database, clock: FakeClock
    ) -> None:
        """Scheduled before the bus runs; the running bus's relay delivers it once due."""
        shop = Shop(db, clock)
        await shop.bus.schedule(IndexPost(1), at=datetime.fromtimestamp(T0, tz=UTC))
        async with shop.bus:
            await shop.wait_for(1)
        assert shop.messages == [IndexPost(1)]


class TestRunningBusOnAFakeClock:
    """MessageBus(clock=...): the running bus's relay waits by the fake clock."""

    async def test_advancing_the_clock_delivers_what_fell_due(self, db: Database) -> None:
        """No flush by hand: the relay sleeps until the due time on the clock, then delivers."""
        clock = testing.FakeClock()
        shop = Shop(db, clock, clock=clock)
        start = clock.time()
        async with shop.bus:
            await shop.bus.schedule(IndexPost(1), delay=60)
            await shop.bus.schedule(IndexPost(2), delay=3600)
            await clock.advance(59)
            assert shop.seen == []
            await clock.advance(1)
            await shop.wait_for(1)
            await clock.advance(3540)
            await shop.wait_for(2)
        assert shop.messages == [IndexPost(1), IndexPost(2)]
        assert clock.time() == start + 3600


class TestArguments:
    """Bad schedules are refused with typed errors, before anything is written."""

    @pytest.mark.parametrize(
        ("at", "delay", "error"),
        [
            (None, None, InvalidArgumentError),
            (datetime.fromtimestamp(T0, tz=UTC), 5, InvalidArgumentError),
            (datetime(2026, 1, 1), None, InvalidArgumentError),  # naive on purpose
            (None, -1, InvalidArgumentError),
            (None, float("nan"), InvalidArgumentError),
            (None, "5", ArgumentTypeError),
            (None, True, ArgumentTypeError),
            ("2026-01-01T00:00:00Z", None, ArgumentTypeError),
        ],
    )
    async def test_refused(
        self, db: Database, clock: FakeClock, at: Any, delay: Any, error: type[Exception]
    ) -> None:
        """Exactly one of at/delay; at aware; delay a finite duration >= 0."""
        shop = Shop(db, clock)
        with pytest.raises(error):
            await shop.bus.schedule(IndexPost(1), at=at, delay=delay)
        async with shop.bus:
            assert (await shop.bus.outbox.status()).scheduled == 0  # type: ignore[union-attr]

    async def test_the_kind_is_checked(self, db: Database, clock: FakeClock) -> None:
        """A command nobody handles, or not a message at all, is refused at once."""
        shop = Shop(db, clock)
        with pytest.raises(NoHandlerError):
            await shop.bus.schedule(Remind(1), delay=1)
        with pytest.raises(MessageKindError):
            await shop.bus.schedule("nope", delay=1)  # type: ignore[arg-type]

    async def test_a_malformed_due_header_is_refused(self, db: Database, clock: FakeClock) -> None:
        """The reserved header must hold epoch seconds."""
        shop = Shop(db, clock)
        for text in ("soon", "inf"):
            with pytest.raises(InvalidArgumentError, match=DUE_HEADER):
                async with shop.bus.unit_of_work() as uow:
                    uow.send(IndexPost(1), headers={DUE_HEADER: text})


class TestWithoutOutbox:
    """A bus without an outbox cannot schedule: a clear ConfigurationError."""

    async def test_bus_schedule_and_cancel(self) -> None:
        """bus.schedule and bus.cancel_scheduled refuse, naming the outbox."""
        bus = MessageBus()
        bus.handler(IndexPost, lambda message: None)
        with pytest.raises(ConfigurationError, match="outbox"):
            await bus.schedule(IndexPost(1), delay=1)
        with pytest.raises(ConfigurationError, match="outbox"):
            await bus.cancel_scheduled("x")

    async def test_ctx_schedule(self) -> None:
        """ctx.schedule in a handler refuses too, failing the handler's run."""
        bus = MessageBus()

        @bus.handler(IndexPost)
        async def index(message: IndexPost, ctx: Context[IndexPost]) -> None:
            ctx.schedule(IndexPost(2), delay=1)

        with pytest.raises(ConfigurationError, match="outbox"):
            await bus.send(IndexPost(1))

    async def test_events_are_refused_with_an_event_log(
        self, db: Database, clock: FakeClock
    ) -> None:
        """With an event log, events cannot be scheduled; commands can."""
        database = (
            SQLiteDatabase(db.location) if db.kind == "sqlite" else PostgresDatabase(db.location)
        )
        bus = MessageBus(outbox=database.outbox(clock=clock), event_log=database.event_log())
        bus.handler(IndexPost, lambda message: None)
        with pytest.raises(ConfigurationError, match="event log"):
            await bus.schedule(PostPublished(1, "x"), delay=1)
        await bus.schedule(IndexPost(1), delay=1)


class TestCancel:
    """bus.cancel_scheduled(id): True if it stopped the delivery, else False."""

    async def test_cancel_before_due(self, db: Database, clock: FakeClock) -> None:
        """Cancelled: never delivered; a second cancel is False."""
        shop = Shop(db, clock)
        schedule_id = await shop.bus.schedule(IndexPost(1), delay=60)
        assert await shop.bus.cancel_scheduled(schedule_id) is True
        assert await shop.bus.cancel_scheduled(schedule_id) is False
        assert await shop.at(60) == 0
        assert shop.seen == []

    async def test_cancel_after_delivery(self, db: Database, clock: FakeClock) -> None:
        """Too late once delivered: False."""
        shop = Shop(db, clock)
        schedule_id = await shop.bus.schedule(IndexPost(1), delay=60)
        assert await shop.at(60) == 1
        assert await shop.bus.cancel_scheduled(schedule_id) is False

    async def test_cancel_in_a_unit_of_work_rolls_back_with_it(
        self, db: Database, clock: FakeClock
    ) -> None:
        """In a unit of work, the cancel joins its transaction: a failure undoes it."""
        shop = Shop(db, clock)
        schedule_id = await shop.bus.schedule(IndexPost(1), delay=60)

        async def cancel_then_fail() -> None:
            async with shop.bus.unit_of_work():
                assert await shop.bus.cancel_scheduled(schedule_id) is True
                raise RuntimeError

        with pytest.raises(RuntimeError):
            await cancel_then_fail()
        assert await shop.at(60) == 1


class TestUnitOfWork:
    """In a unit of work the schedule is a row of its transaction."""

    async def test_rollback_drops_the_schedule(self, db: Database, clock: FakeClock) -> None:
        """The caller's writes and the schedule roll back together."""
        shop = Shop(db, clock)

        async def schedule_then_fail() -> None:
            async with shop.bus.unit_of_work() as uow:
                await uow.execute(db.insert_post(), ["draft"])
                await shop.bus.schedule(IndexPost(1), delay=5)
                uow.schedule(IndexPost(2), delay=5)
                raise RuntimeError

        with pytest.raises(RuntimeError):
            await schedule_then_fail()
        assert await shop.at(5) == 0
        assert db.titles() == []

    async def test_commit_keeps_both(self, db: Database, clock: FakeClock) -> None:
        """Committed: the post is there and the schedule is delivered when due."""
        shop = Shop(db, clock)
        async with shop.bus.unit_of_work() as uow:
            await uow.execute(db.insert_post(), ["published"])
            await shop.bus.schedule(IndexPost(1), delay=5)
        assert db.titles() == ["published"]
        assert await shop.at(5) == 1


class TestHandlerContext:
    """ctx.schedule(...) in a handler: written only if the handler succeeds."""

    def shop(self, db: Database, clock: FakeClock, *, unit_of_work: bool) -> Shop:
        shop = Shop(db, clock)
        self.fail = False
        middleware = [UnitOfWorkMiddleware(shop.bus)] if unit_of_work else []

        async def order(message: Remind, ctx: Context[Remind]) -> None:
            ctx.schedule(IndexPost(message.post_id), delay=30)
            ctx.send(IndexPost(-message.post_id))
            if self.fail:
                raise RuntimeError

        shop.bus.handler(Remind, order, middleware=middleware)
        return shop

    @pytest.mark.parametrize("unit_of_work", [True, False])
    async def test_scheduled_after_success(
        self, db: Database, clock: FakeClock, unit_of_work: bool
    ) -> None:
        """The follow-up goes now, the scheduled one when due; its cause is the handled message."""
        shop = self.shop(db, clock, unit_of_work=unit_of_work)
        await shop.bus.send(Remind(7))
        await shop.at(0)
        assert shop.messages == [IndexPost(-7)]
        assert await shop.at(30) == 1
        assert shop.messages == [IndexPost(-7), IndexPost(7)]

    @pytest.mark.parametrize("unit_of_work", [True, False])
    async def test_nothing_after_failure(
        self, db: Database, clock: FakeClock, unit_of_work: bool
    ) -> None:
        """A failed handler schedules nothing."""
        shop = self.shop(db, clock, unit_of_work=unit_of_work)
        self.fail = True
        with pytest.raises(RuntimeError):
            await shop.bus.send(Remind(7))
        assert await shop.at(30) == 0
        assert shop.seen == []

    async def test_a_scheduled_message_comes_back_to_a_handler(
        self, db: Database, clock: FakeClock
    ) -> None:
        """A handler's timeout: scheduled by it, handled later by the same bus."""
        shop = self.shop(db, clock, unit_of_work=True)
        timeouts: list[IndexPost] = []

        async def timeout(message: IndexPost) -> None:
            timeouts.append(message)

        with replace_handler(shop.bus, IndexPost, timeout):
            await shop.bus.send(Remind(3))
            await shop.at(0)
            assert timeouts == [IndexPost(-3)]
            await shop.at(30)
        assert timeouts == [IndexPost(-3), IndexPost(3)]


class TestRestart:
    """A schedule is a committed row: a new bus on the same database delivers it."""

    async def test_a_new_bus_delivers_it(self, db: Database, clock: FakeClock) -> None:
        """Scheduled by one bus, which stops; another, started later, delivers it when due."""
        first = Shop(db, clock)
        async with first.bus:
            await first.bus.schedule(IndexPost(1), delay=3600)
        second = Shop(db, clock)
        assert await second.at(3599) == 0
        async with second.bus:
            clock.now = T0 + 3600
            # The fake clock moved under the relay's feet: its poll finds the row due.
            await second.wait_for(1)
        assert second.messages == [IndexPost(1)]
        assert first.seen == []
