"""Process managers: one transaction per message, one instance per key, timeouts, tombstones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from messagebus import (
    ArgumentTypeError,
    BusStateError,
    Command,
    ConfigurationError,
    Context,
    DatabaseMismatchError,
    Envelope,
    Event,
    InvalidArgumentError,
    MessageBus,
)
from messagebus.postgres import PostgresDatabase
from messagebus.process import Process, ProcessManager
from messagebus.sqlite import SQLiteDatabase
from messagebus.testing import FakeClock

pytestmark = pytest.mark.anyio


@attrs.frozen
class OrderPlaced(Event, name="test.pm.order-placed"):
    order_id: str


@attrs.frozen
class ItemAdded(Event, name="test.pm.item-added"):
    order_id: str


@attrs.frozen
class PaymentReceived(Event, name="test.pm.payment-received"):
    order_id: str
    amount: int


@attrs.frozen
class PaymentOverdue(Command[None], name="test.pm.payment-overdue"):
    order_id: str


@attrs.frozen
class OrderAccepted(Event, name="test.pm.order-accepted"):
    order_id: str


@attrs.frozen
class OrderConfirmed(Event, name="test.pm.order-confirmed"):
    order_id: str
    amount: int


@attrs.frozen
class OrderCancelled(Event, name="test.pm.order-cancelled"):
    order_id: str


@attrs.frozen
class Shipped(Event, name="test.pm.shipped"):
    order_id: str


@attrs.define
class OrderState:
    order_id: str
    items: int = 0
    paid: int = 0


class PaymentRefusedError(Exception):
    """A handler's own failure, after it published: everything rolls back."""


def order_process() -> ProcessManager[OrderState]:
    orders = ProcessManager("test.order", OrderState)

    @orders.starts(OrderPlaced, correlate=lambda event: event.order_id)
    async def placed(event: OrderPlaced, process: Process[OrderState]) -> OrderState:
        process.publish(OrderAccepted(event.order_id))
        process.schedule(PaymentOverdue(event.order_id), delay=1800)
        return OrderState(event.order_id)

    @orders.handles(ItemAdded, correlate=lambda event: event.order_id, when_missing="ignore")
    async def item(state: OrderState, event: ItemAdded, process: Process[OrderState]) -> None:
        await anyio.lowlevel.checkpoint()  # let racing runs interleave where they can
        state.items += 1

    @orders.handles(PaymentReceived, correlate=lambda event: event.order_id)
    async def paid(
        state: OrderState, event: PaymentReceived, process: Process[OrderState]
    ) -> OrderState:
        process.publish(OrderConfirmed(state.order_id, event.amount))
        if event.amount < 0:
            raise PaymentRefusedError("a negative payment")
        process.complete()
        return attrs.evolve(state, paid=event.amount)

    @orders.handles(PaymentOverdue, correlate=lambda command: command.order_id)
    async def overdue(
        state: OrderState, command: PaymentOverdue, process: Process[OrderState]
    ) -> None:
        process.publish(OrderCancelled(state.order_id))
        process.complete()

    return orders


@attrs.define
class Shop:
    """A bus with the order process on one database, recording the events that left."""

    bus: MessageBus
    database: Any
    clock: FakeClock
    seen: list[Event] = attrs.field(factory=list)

    @property
    def store(self) -> Any:
        return self.processes

    processes: Any = None

    async def settle(self) -> None:
        """Deliver what the committed runs wrote to the outbox (in-process), all of it."""
        assert self.bus.relay is not None
        await self.bus.relay.drain()

    def events(self, kind: type[Event]) -> list[Event]:
        return [event for event in self.seen if isinstance(event, kind)]


@pytest.fixture(params=["sqlite", "postgres"])
async def shop(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Shop]:
    clock = FakeClock()
    if request.param == "sqlite":
        database: Any = SQLiteDatabase(tmp_path / "shop.sqlite3")
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        database = PostgresDatabase(dsn, schema=request.getfixturevalue("postgres_schema"))
    bus = MessageBus(outbox=database.outbox(clock=clock), service="shop")
    made = Shop(bus, database, clock)
    made.processes = database.processes(clock=clock)
    order_process().register(bus, store=made.processes, inbox=database.idempotency(clock=clock))
    for kind in (OrderAccepted, OrderConfirmed, OrderCancelled):
        bus.subscriber(kind, made.seen.append, name=f"record-{kind.__name__}")
    async with database, bus:
        yield made


class TestLifecycle:
    """Start, continue, complete; what a message meets at each stage."""

    async def test_a_start_saves_the_state_and_its_messages_leave_after_the_commit(
        self, shop: Shop
    ) -> None:
        await shop.bus.publish(OrderPlaced("o-1"))
        await shop.settle()
        record = await shop.store.get("test.order", "o-1")
        assert record is not None
        assert (record.version, record.completed) == (1, False)
        assert '"order_id":"o-1"' in record.state
        assert shop.events(OrderAccepted) == [OrderAccepted("o-1")]

    async def test_a_continuing_message_changes_the_state(self, shop: Shop) -> None:
        await shop.bus.publish(OrderPlaced("o-1"))
        await shop.bus.publish(ItemAdded("o-1"))
        await shop.bus.publish(ItemAdded("o-1"))
        record = await shop.store.get("test.order", "o-1")
        assert record is not None
        assert record.version == 3
        assert '"items":2' in record.state

    async def test_completion_leaves_a_tombstone_and_late_messages_are_ignored(
        self, shop: Shop
    ) -> None:
        await shop.bus.publish(OrderPlaced("o-1"))
        await shop.bus.publish(PaymentReceived("o-1", 500))
        await shop.settle()
        record = await shop.store.get("test.order", "o-1")
        assert record is not None
        assert (record.state, record.completed) == (None, True)
        # A second payment, and a second start: recognised, neither restarts the order.
        await shop.bus.publish(PaymentReceived("o-1", 700))
        await shop.bus.publish(OrderPlaced("o-1"))
        await shop.settle()
        assert shop.events(OrderConfirmed) == [OrderConfirmed("o-1", 500)]
        assert shop.events(OrderAccepted) == [OrderAccepted("o-1")]
        assert len(await shop.bus.dead_letters.list()) == 0

    async def test_the_tombstone_goes_after_its_retention(self, shop: Shop) -> None:
        await shop.bus.publish(OrderPlaced("o-1"))
        await shop.bus.publish(PaymentReceived("o-1", 500))
        assert await shop.store.cleanup() == 0
        await shop.clock.advance(7 * 24 * 3600)
        assert await shop.store.cleanup() == 1
        assert await shop.store.get("test.order", "o-1") is None


class TestMissingInstance:
    """What a message that finds no instance does is declared per message type."""

    async def test_dead_letter_is_the_default(self, shop: Shop) -> None:
        await shop.bus.publish(PaymentReceived("nobody", 500))
        (letter,) = await shop.bus.dead_letters.list()
        assert letter.error_type.endswith("ProcessNotFoundError")
        assert "no instance 'nobody'" in letter.error_message
        assert letter.attempts == 1  # never retried: another try finds nothing either

    async def test_ignore_is_quiet(self, shop: Shop) -> None:
        await shop.bus.publish(ItemAdded("nobody"))
        assert len(await shop.bus.dead_letters.list()) == 0
        assert await shop.store.get("test.order", "nobody") is None


class TestOneTransaction:
    """The state, the messages and the inbox record commit or roll back together."""

    async def test_a_failure_after_publishing_keeps_nothing(self, shop: Shop) -> None:
        await shop.bus.publish(OrderPlaced("o-1"))
        await shop.bus.publish(PaymentReceived("o-1", -1))
        await shop.settle()
        record = await shop.store.get("test.order", "o-1")
        assert record is not None
        assert (record.version, record.completed) == (1, False)
        assert shop.events(OrderConfirmed) == []
        (letter,) = await shop.bus.dead_letters.list()
        assert letter.error_type.endswith("PaymentRefusedError")

    async def test_a_redelivered_message_is_a_no_op(self, shop: Shop) -> None:
        await shop.bus.publish(OrderPlaced("o-1"))
        added = Envelope(ItemAdded("o-1"))
        await shop.bus.handle_delivered(added)
        await shop.bus.handle_delivered(added)  # the same message again (same id)
        record = await shop.store.get("test.order", "o-1")
        assert record is not None
        assert record.version == 2
        assert '"items":1' in record.state


class TestTimeouts:
    """Timeouts are scheduled messages in the instance's transaction that come back to it."""

    async def test_an_unpaid_order_is_cancelled_when_its_timeout_is_due(self, shop: Shop) -> None:
        await shop.bus.publish(OrderPlaced("o-1"))
        await shop.settle()
        await shop.clock.advance(1799)
        await shop.settle()
        assert shop.events(OrderCancelled) == []
        await shop.clock.advance(1)
        await shop.settle()
        assert shop.events(OrderCancelled) == [OrderCancelled("o-1")]
        record = await shop.store.get("test.order", "o-1")
        assert record is not None
        assert record.completed

    async def test_a_timeout_after_completion_is_ignored(self, shop: Shop) -> None:
        await shop.bus.publish(OrderPlaced("o-1"))
        await shop.bus.publish(PaymentReceived("o-1", 500))
        # Delivered first: moving the clock past a delivery's lease would hand its row
        # to the next flush too (at least once), which is not what this test is about.
        await shop.settle()
        await shop.clock.advance(1800)
        await shop.settle()
        assert shop.events(OrderCancelled) == []
        assert shop.events(OrderConfirmed) == [OrderConfirmed("o-1", 500)]
        assert len(await shop.bus.dead_letters.list()) == 0


class TestRaces:
    """Concurrent messages of one instance: one instance, every change kept."""

    async def test_racing_starts_make_one_instance(self, shop: Shop) -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(5):
                tasks.start_soon(shop.bus.publish, OrderPlaced("o-1"))
        await shop.settle()
        record = await shop.store.get("test.order", "o-1")
        assert record is not None
        assert record.version == 1
        assert shop.events(OrderAccepted) == [OrderAccepted("o-1")]
        # The losers' conflicts were run again and found the instance: none dead-lettered.
        assert len(await shop.bus.dead_letters.list()) == 0

    async def test_concurrent_updates_are_serialised(self, shop: Shop) -> None:
        await shop.bus.publish(OrderPlaced("o-1"))
        async with anyio.create_task_group() as tasks:
            for _ in range(10):
                tasks.start_soon(shop.bus.publish, ItemAdded("o-1"))
        record = await shop.store.get("test.order", "o-1")
        assert record is not None
        assert record.version == 11
        assert '"items":10' in record.state
        assert len(await shop.bus.dead_letters.list()) == 0


class TestDeclaration:
    """Mistakes in a declaration are found when it is made."""

    def test_the_state_must_be_an_attrs_class(self) -> None:
        with pytest.raises(ArgumentTypeError, match="attrs class"):
            ProcessManager("bad", dict)

    def test_handlers_are_async(self) -> None:
        orders = ProcessManager("bad", OrderState)
        with pytest.raises(ArgumentTypeError, match="async"):
            orders.starts(OrderPlaced, correlate=lambda e: e.order_id)(lambda e, p: None)  # type: ignore[arg-type, return-value]

    def test_a_type_is_declared_once_per_role(self) -> None:
        orders = order_process()
        with pytest.raises(ConfigurationError, match="already declares"):

            @orders.starts(OrderPlaced, correlate=lambda event: event.order_id)
            async def again(event: OrderPlaced, process: Process[OrderState]) -> OrderState:
                return OrderState(event.order_id)  # pragma: no cover

    def test_when_missing_is_checked(self) -> None:
        with pytest.raises(InvalidArgumentError, match="when_missing"):
            order_process().handles(ItemAdded, correlate=str, when_missing="start")  # type: ignore[arg-type]

    def test_a_manager_with_nothing_declared_cannot_register(self, tmp_path: Path) -> None:
        database = SQLiteDatabase(tmp_path / "db.sqlite3")
        bus = MessageBus(outbox=database.outbox())
        empty = ProcessManager("empty", OrderState)
        with pytest.raises(BusStateError, match="declares no message"):
            empty.register(bus, store=database.processes(), inbox=database.idempotency())

    async def test_a_store_on_another_database_is_refused(self, tmp_path: Path) -> None:
        one, other = SQLiteDatabase(tmp_path / "one.db"), SQLiteDatabase(tmp_path / "two.db")
        bus = MessageBus(outbox=one.outbox())
        order_process().register(bus, store=other.processes(), inbox=one.idempotency())
        async with one, other, bus:
            with pytest.raises(DatabaseMismatchError, match="not on the outbox's database"):
                await bus.send(PaymentOverdue("o-1"))


def test_handlers_receive_the_bus_context(tmp_path: Path) -> None:
    """Process.ctx is the bus's context of the message (its envelope and ids)."""
    seen: list[Context[Any]] = []
    orders = ProcessManager("ctx", OrderState)

    @orders.starts(OrderPlaced, correlate=lambda event: event.order_id)
    async def placed(event: OrderPlaced, process: Process[OrderState]) -> OrderState:
        seen.append(process.ctx)
        assert process.key == event.order_id
        return OrderState(event.order_id)

    async def main() -> None:
        database = SQLiteDatabase(tmp_path / "db.sqlite3")
        bus = MessageBus(outbox=database.outbox())
        orders.register(bus, store=database.processes(), inbox=database.idempotency())
        async with database, bus:
            await bus.publish(OrderPlaced("o-9"))

    anyio.run(main)
    (ctx,) = seen
    assert ctx.envelope.message == OrderPlaced("o-9")


@attrs.define
class OrderStateV2:
    order_id: str
    lines: int = 0


class TestStateCodec:
    """The state travels by the codec's strict rules; old versions are upcast."""

    def test_an_old_state_is_upcast(self) -> None:
        from messagebus.process._state import StateCodec

        old = StateCodec("o", OrderState, 1)
        text = old.encode(OrderState("o-1", items=3))
        new = StateCodec(
            "o",
            OrderStateV2,
            2,
            {1: lambda data: {"order_id": data["order_id"], "lines": data["items"]}},
        )
        assert new.decode(text, 1) == OrderStateV2("o-1", lines=3)
        assert new.decode(new.encode(OrderStateV2("o-2", 1)), 2) == OrderStateV2("o-2", 1)

    def test_what_cannot_be_read_is_a_decode_error(self) -> None:
        from messagebus import DecodeError
        from messagebus.process._state import StateCodec

        codec = StateCodec("o", OrderState, 1)
        with pytest.raises(DecodeError, match="version 2; this code knows up to 1"):
            codec.decode('{"order_id": "x"}', 2)
        with pytest.raises(
            DecodeError, match=r"state.items: expected `int`|state.items: expected int"
        ):
            codec.decode('{"order_id": "x", "items": "3"}', 1)
        with pytest.raises(DecodeError, match="cannot decode"):
            codec.decode("{not json", 1)

    def test_what_cannot_be_written_is_an_encode_error(self) -> None:
        from messagebus import EncodeError
        from messagebus.process._state import StateCodec

        codec = StateCodec("o", OrderState, 1)
        with pytest.raises(EncodeError, match="must be a OrderState"):
            codec.encode(OrderStateV2("x"))  # type: ignore[arg-type]
        with pytest.raises(EncodeError, match="NaN"):
            StateCodec("f", Floats, 1).encode(Floats(float("nan")))

    def test_a_broken_upcaster_chain_is_refused(self) -> None:
        from messagebus.process._state import StateCodec

        with pytest.raises(
            InvalidArgumentError, match=r"no upcaster from state version\(s\) \[2\]"
        ):
            StateCodec("o", OrderState, 3, {1: dict})
        with pytest.raises(InvalidArgumentError, match=">= 1"):
            StateCodec("o", OrderState, 0)


@attrs.define
class Floats:
    value: float


@attrs.define
class AlwaysBeaten:
    """A process store on which another message always starts the instance first."""

    inner: Any
    attempts: int = 0

    @property
    def database(self) -> object:
        return self.inner.database

    def load_in(self, connection: Any, process: str, key: str) -> Any:
        return self.inner.load_in(connection, process, key)

    def start_in(self, *args: Any, **kwargs: Any) -> bool:
        self.attempts += 1
        return False


class TestStoredStateVersions:
    """A deployed process's stored state meets the next version of its code."""

    async def test_a_stored_old_state_is_upcast_and_saved_at_the_new_version(
        self, tmp_path: Path
    ) -> None:
        database = SQLiteDatabase(tmp_path / "shop.sqlite3")
        old_bus = MessageBus(outbox=database.outbox(), service="shop")
        old = ProcessManager("test.versions", OrderState)

        @old.starts(OrderPlaced, correlate=lambda event: event.order_id)
        async def placed(event: OrderPlaced, process: Process[OrderState]) -> OrderState:
            return OrderState(event.order_id, items=3)

        old.register(old_bus, store=database.processes(), inbox=database.idempotency())
        async with database, old_bus:
            await old_bus.publish(OrderPlaced("o-1"))

        # The next deployment: a new process on the same file.
        database = SQLiteDatabase(tmp_path / "shop.sqlite3")
        new_bus = MessageBus(outbox=database.outbox(), service="shop")
        new = ProcessManager(
            "test.versions",
            OrderStateV2,
            version=2,
            upcasters={1: lambda data: {"order_id": data["order_id"], "lines": data["items"]}},
        )

        @new.handles(ItemAdded, correlate=lambda event: event.order_id)
        async def added(
            state: OrderStateV2, event: ItemAdded, process: Process[OrderStateV2]
        ) -> None:
            state.lines += 1

        store = database.processes()
        new.register(new_bus, store=store, inbox=database.idempotency())
        async with database, new_bus:
            before = await store.get("test.versions", "o-1")
            assert before is not None
            assert before.state_version == 1
            await new_bus.publish(ItemAdded("o-1"))
            after = await store.get("test.versions", "o-1")
        assert after is not None
        assert (after.state_version, after.version) == (2, 2)
        assert after.state is not None
        assert '"lines":4' in after.state


class TestConflictsExhausted:
    """A message that loses its race max_conflicts times fails like any other error."""

    async def test_the_conflict_is_raised_after_max_conflicts_runs(self, tmp_path: Path) -> None:
        from messagebus import ProcessConflictError

        database = SQLiteDatabase(tmp_path / "shop.sqlite3")
        bus = MessageBus(outbox=database.outbox(), service="shop")
        orders = ProcessManager("test.beaten", OrderState, max_conflicts=3)
        started: list[str] = []

        @orders.starts(OrderPlaced, correlate=lambda event: event.order_id)
        async def placed(event: OrderPlaced, process: Process[OrderState]) -> OrderState:
            started.append(event.order_id)
            process.publish(OrderAccepted(event.order_id))
            return OrderState(event.order_id)

        store = AlwaysBeaten(database.processes())
        beaten: Any = store  # the parts of a ProcessStore a start uses
        orders.register(bus, store=beaten, inbox=database.idempotency())
        accepted: list[Event] = []
        bus.subscriber(OrderAccepted, accepted.append, name="record")
        async with database, bus:
            await bus.publish(OrderPlaced("o-1"))
            assert bus.relay is not None
            await bus.relay.drain()
            (letter,) = await bus.dead_letters.list()
        assert (store.attempts, started) == (3, ["o-1"] * 3)
        assert letter.error_type.endswith(ProcessConflictError.__name__)
        assert accepted == []  # the runs that lost kept nothing they published
