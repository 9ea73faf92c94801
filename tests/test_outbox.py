"""The transactional outbox on real SQLite and PostgreSQL: unit of work, relay, stores."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from typing import Any

import anyio
import pytest

from messagebus import WireCodec
from messagebus._envelope import Envelope
from messagebus._errors import SchemaVersionError
from messagebus._registry import MessageRegistry
from messagebus.outbox import (
    DeliveryFailure,
    OutboxMessage,
    OutboxRelay,
    OutboxStatus,
    PostgresOutbox,
    Settlement,
    SQLiteOutbox,
    deliver_each,
)
from messagebus.outbox._sql import SCHEMA_VERSION
from messagebus.retry import ExponentialBackoff
from messagebus.transports import Destination
from tests.messages import PostPublished
from tests.outbox_support import T0, Database, FakeClock, Outbox, Sink, database, message

pytestmark = pytest.mark.anyio

BACKOFF = ExponentialBackoff(initial=10.0, multiplier=2.0, cap=60.0)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    return database(str(request.param), request)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def outbox(db: Database, clock: FakeClock) -> Any:
    async with db.make(clock=clock) as store:
        yield store


def relay(store: Outbox, sink: Any, **options: Any) -> OutboxRelay:
    options.setdefault("backoff", BACKOFF)
    return OutboxRelay(store, sink, **options)


async def commit(store: Outbox, messages: Sequence[OutboxMessage]) -> None:
    async with store.transaction() as tx:
        tx.add(messages)


class Boom(Exception):
    pass


async def post(
    store: Outbox, db: Database, title: str, m: OutboxMessage, *, then: Exception | None = None
) -> None:
    """In one unit of work, write a post and add ``m``; raise ``then`` before leaving."""
    async with store.transaction() as tx:
        await tx.execute(db.insert_post(), [title])
        tx.add(m)
        if then is not None:
            raise then


class TestUnitOfWork:
    """One transaction carries the caller's writes and the messages; commit or neither."""

    async def test_commit_writes_both_and_then_notifies(self, db: Database, outbox: Outbox) -> None:
        """After the block, the user's row and the messages are committed; listeners get ids."""
        seen: list[Sequence[str]] = []
        outbox.on_commit(seen.append)
        async with outbox.transaction() as tx:
            assert await tx.execute(db.insert_post(), ["Hello"]) == 1
            tx.add(message(1))
            tx.add([message(2), message(3)])
            assert seen == []  # nothing before the commit
        assert db.titles() == ["Hello"]
        assert seen == [("m-0001", "m-0002", "m-0003")]
        assert (await outbox.status()).pending == 3

    async def test_an_exception_rolls_back_both(self, db: Database, outbox: Outbox) -> None:
        """An error in the block: no user row, no message, no notification; the error propagates."""
        seen: list[Sequence[str]] = []
        outbox.on_commit(seen.append)
        with pytest.raises(Boom):
            await post(outbox, db, "Never", message(1), then=Boom())
        assert db.titles() == []
        assert seen == []
        sink = Sink()
        assert await relay(outbox, sink).flush() == 0
        assert sink.calls == 0

    async def test_cancellation_rolls_back(self, db: Database, outbox: Outbox) -> None:
        """A cancelled unit of work commits nothing."""
        with anyio.move_on_after(0):
            async with outbox.transaction() as tx:
                await tx.execute(db.insert_post(), ["Cancelled"])
                tx.add(message(1))
                await anyio.sleep_forever()
        assert db.titles() == []
        assert (await outbox.status()).pending == 0

    async def test_a_duplicate_id_fails_the_commit_and_rolls_back(
        self, db: Database, outbox: Outbox
    ) -> None:
        """A message id already in the table fails the whole unit of work."""
        await commit(outbox, [message(1)])
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            await post(outbox, db, "Dup", message(1))
        assert db.titles() == []
        assert (await outbox.status()).pending == 1

    async def test_fetch_and_run_see_the_transaction(self, db: Database, outbox: Outbox) -> None:
        """Reads in the block see its own uncommitted writes; run() gets the raw connection."""
        async with outbox.transaction() as tx:
            await tx.execute(db.insert_post(), ["Draft"])
            assert await tx.fetch("SELECT title FROM posts") == [("Draft",)]
            kind = await tx.run(lambda connection: type(connection).__module__)
        assert kind.split(".")[0] == ("sqlite3" if db.kind == "sqlite" else "psycopg")

    async def test_the_ended_unit_of_work_refuses_calls(self, outbox: Outbox) -> None:
        """After the block, add() and statements raise ClosedResourceError."""
        async with outbox.transaction() as tx:
            pass
        with pytest.raises(anyio.ClosedResourceError):
            tx.add(message(1))
        with pytest.raises(anyio.ClosedResourceError):
            await tx.execute("SELECT 1")

    async def test_a_first_use_may_be_a_unit_of_work(self, db: Database) -> None:
        """A store never opened before sets its table up on its first transaction."""
        store = db.make()
        try:
            await commit(store, [message(1)])
            assert (await store.status()).pending == 1
        finally:
            await store.aclose()

    async def test_a_closed_store_refuses_a_unit_of_work(self, db: Database) -> None:
        """After aclose, transaction() raises ClosedResourceError."""
        store = db.make()
        await store.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await commit(store, [message(1)])

    async def test_a_failing_listener_does_not_undo_the_commit(self, outbox: Outbox) -> None:
        """A listener's error is logged; the block returns, later listeners still run."""
        seen: list[Sequence[str]] = []

        def broken(ids: Sequence[str]) -> None:
            raise Boom

        outbox.on_commit(broken)
        outbox.on_commit(seen.append)
        await commit(outbox, [message(1)])
        assert seen == [("m-0001",)]

    async def test_no_messages_no_notification(self, outbox: Outbox) -> None:
        """A unit of work without messages tells the listeners nothing."""
        seen: list[Sequence[str]] = []
        outbox.on_commit(seen.append)
        await commit(outbox, [])
        assert seen == []

    async def test_insert_on_your_own_connection(self, db: Database, outbox: Outbox) -> None:
        """insert() writes rows in a transaction the caller manages on its own connection."""
        if isinstance(outbox, SQLiteOutbox):
            with closing(sqlite3.connect(db.location)) as connection, connection:
                outbox.insert(connection, [message(1)])
        else:
            import psycopg

            with psycopg.connect(db.location) as pg_connection:
                outbox.insert(pg_connection, [message(1)])
        sink = Sink()
        assert await relay(outbox, sink).flush() == 1
        assert sink.ids == ["m-0001"]

    async def test_from_envelope_encodes_the_message(self, outbox: Outbox) -> None:
        """An envelope becomes a message with its id, CloudEvents body and group key."""
        registry = MessageRegistry()
        registry.add(PostPublished)
        codec = WireCodec(registry, source="/blog")
        envelope = Envelope(PostPublished(post_id=7, title="Hi"), group_key="post-7")
        outgoing = OutboxMessage.from_envelope(envelope, Destination.topic("blog"), codec)
        await commit(outbox, [outgoing])
        sink = Sink()
        await relay(outbox, sink).flush()
        (delivered,) = sink.delivered
        assert delivered == outgoing
        assert codec.decode(delivered.body).message == PostPublished(post_id=7, title="Hi")


class TestBorrowedPool:
    """PostgreSQL: a pool of the caller's, even of autocommit connections, works as well."""

    async def test_units_of_work_on_autocommit_connections(
        self, request: pytest.FixtureRequest
    ) -> None:
        """Commit and rollback both hold; the connection goes back in autocommit mode."""
        from psycopg_pool import ConnectionPool

        db = database("postgres", request)
        with ConnectionPool(
            db.location, kwargs={"autocommit": True}, min_size=1, max_size=2
        ) as pool:
            async with PostgresOutbox(pool) as store:
                await post(store, db, "kept", message(1))
                with pytest.raises(Boom):
                    await post(store, db, "dropped", message(2), then=Boom())
                assert (await store.status()).pending == 1
            assert db.titles() == ["kept"]
            with pool.connection() as connection:
                assert connection.autocommit


class TestRelay:
    """Committed messages are delivered, once, in order; failures back off and park."""

    async def test_commit_then_flush_delivers_exactly_the_committed_messages(
        self, outbox: Outbox
    ) -> None:
        """flush(ids) right after commit delivers those messages, in order, byte for byte."""
        ids: list[Sequence[str]] = []
        outbox.on_commit(ids.append)
        messages = [message(n, destination=Destination.queue(f"q{n % 2}")) for n in range(10)]
        await commit(outbox, messages)
        sink = Sink()
        assert await relay(outbox, sink).flush(ids[0]) == 10
        assert sink.delivered == messages
        assert await relay(outbox, sink).flush() == 0
        assert (await outbox.status()).sent == 10

    async def test_flush_of_everything_takes_batch_after_batch(self, outbox: Outbox) -> None:
        """flush() with no ids delivers every claimable row, batch_size at a time."""
        await commit(outbox, [message(n) for n in range(7)])
        sink = Sink()
        assert await relay(outbox, sink, batch_size=3).flush() == 7
        assert sink.calls == 3
        assert sink.ids == [f"m-{n:04d}" for n in range(7)]

    async def test_flush_of_ids_does_not_jump_its_group(self, outbox: Outbox) -> None:
        """Flushing a later row of a group leaves it while an earlier one is undelivered."""
        await commit(outbox, [message(1, group="g"), message(2, group="g")])
        sink = Sink()
        assert await relay(outbox, sink).flush(["m-0002"]) == 0
        assert await relay(outbox, sink).flush(["m-0001", "m-0002"]) == 2
        assert sink.ids == ["m-0001", "m-0002"]

    async def test_a_failing_delivery_backs_off_then_parks(
        self, outbox: Outbox, clock: FakeClock
    ) -> None:
        """Each failure waits backoff.delay(n); after max_attempts the row is dead, not retried."""
        await commit(outbox, [message(1)])
        sink = Sink(fail={"m-0001": DeliveryFailure("m-0001", "broker down")})
        r = relay(outbox, sink, max_attempts=3)
        assert await r.flush() == 0
        assert sink.calls == 1
        clock.advance(BACKOFF.delay(1) - 0.5)
        assert await r.flush() == 0
        assert sink.calls == 1  # still backing off
        clock.advance(0.5)
        await r.flush()
        assert sink.calls == 2
        clock.advance(BACKOFF.delay(2))
        await r.flush()
        assert sink.calls == 3
        clock.advance(3600)
        await r.flush()
        assert sink.calls == 3  # dead: never again
        (dead,) = await outbox.list("dead")
        assert (dead.message.id, dead.status, dead.attempts) == ("m-0001", "dead", 3)
        assert dead.last_error == "broker down"
        assert (await outbox.status()).dead == 1

    async def test_requeue_replays_a_dead_row(self, outbox: Outbox) -> None:
        """requeue() makes a dead row pending with its attempts reset; it is delivered."""
        await commit(outbox, [message(1)])
        failing = Sink(fail={"m-0001": DeliveryFailure("m-0001", "too big", retry=False)})
        await relay(outbox, failing).flush()
        assert [e.attempts for e in await outbox.list("dead")] == [1]
        assert await outbox.requeue("m-0001")
        assert not await outbox.requeue("m-0001")
        assert not await outbox.requeue("unknown")
        sink = Sink()
        assert await relay(outbox, sink).flush() == 1
        assert sink.ids == ["m-0001"]
        assert await outbox.list("dead") == []

    async def test_an_exception_fails_the_whole_batch(self, outbox: Outbox) -> None:
        """deliver raising counts a failed attempt for every message of the batch."""
        await commit(outbox, [message(1), message(2)])

        async def broken(messages: Sequence[OutboxMessage]) -> Sequence[DeliveryFailure]:
            raise Boom("no route")

        assert await relay(outbox, broken).flush() == 0
        state = await outbox.status()
        assert (state.pending, state.in_flight) == (2, 0)
        entries = await outbox.list("pending")
        assert [(e.attempts, e.last_error) for e in entries] == [(1, "Boom('no route')")] * 2

    async def test_deliver_each_fails_only_what_raised(self, outbox: Outbox) -> None:
        """Keyless messages after a failed one are still sent by deliver_each."""
        await commit(outbox, [message(1), message(2)])
        sent: list[str] = []

        async def send(m: OutboxMessage) -> None:
            if m.id == "m-0001":
                raise Boom
            sent.append(m.id)

        assert await relay(outbox, deliver_each(send)).flush() == 1
        assert sent == ["m-0002"]

    async def test_a_failure_holds_its_group_back(self, outbox: Outbox, clock: FakeClock) -> None:
        """Later rows of a failed row's group wait, without attempts counted; others go on."""
        await commit(outbox, [message(1, group="g"), message(2, group="g"), message(3, group="h")])
        fails: list[str] = []

        async def send(m: OutboxMessage) -> None:
            if m.id in fails or (m.id == "m-0001" and not fails):
                fails.append(m.id)
                raise Boom(m.id)
            sent.append(m.id)

        sent: list[str] = []
        r = relay(outbox, deliver_each(send), max_attempts=2)
        await r.flush()
        assert sent == ["m-0003"]
        assert [(e.message.id, e.attempts) for e in await outbox.list("pending")] == [
            ("m-0001", 1),
            ("m-0002", 0),
        ]
        await r.flush()
        assert sent == ["m-0003"]  # m-0002 waits behind m-0001's backoff
        clock.advance(BACKOFF.delay(1))
        await r.flush()  # m-0001 fails again: dead, which lets m-0002 go
        await r.flush()
        assert sent == ["m-0003", "m-0002"]
        assert [e.message.id for e in await outbox.list("dead")] == ["m-0001"]

    async def test_a_lost_relay_rows_return_after_the_lease(
        self, db: Database, outbox: Outbox, clock: FakeClock
    ) -> None:
        """Rows claimed by a relay that never settles are claimable again once the lease ends."""
        await commit(outbox, [message(1)])
        (claimed,) = await outbox.claim("crashed-relay", lease=30.0, limit=10)
        assert claimed.message.id == "m-0001"
        sink = Sink()
        assert await relay(outbox, sink).flush() == 0
        assert (await outbox.status()).in_flight == 1
        clock.advance(30.0)
        assert await relay(outbox, sink).flush() == 1
        # The crashed relay's late settlement of a lost lease changes nothing.
        await outbox.settle("crashed-relay", Settlement(retry=[("m-0001", 0.0, "late")]))
        assert (await outbox.status()).sent == 1

    async def test_a_cancelled_flush_releases_its_rows(self, outbox: Outbox) -> None:
        """Cancelling a delivery gives the claimed rows back at once, not at lease end."""
        await commit(outbox, [message(1)])
        started = anyio.Event()

        async def hang(messages: Sequence[OutboxMessage]) -> Sequence[DeliveryFailure]:
            started.set()
            await anyio.sleep_forever()
            raise AssertionError  # pragma: no cover

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(relay(outbox, hang).flush)
            await started.wait()
            tasks.cancel_scope.cancel()
        sink = Sink()
        assert await relay(outbox, sink).flush() == 1

    async def test_cleanup_deletes_old_sent_rows_a_batch_at_a_time(
        self, outbox: Outbox, clock: FakeClock
    ) -> None:
        """Sent rows older than the retention go, at most cleanup_limit per call."""
        await commit(outbox, [message(n) for n in range(5)])
        r = relay(outbox, Sink(), retention=100.0, cleanup_limit=3)
        await r.flush()
        assert await r.cleanup() == 0
        clock.advance(100.0)
        assert await r.cleanup() == 3
        assert await r.cleanup() == 2
        assert (await outbox.status()).sent == 0

    async def test_status_counts_each_state(self, outbox: Outbox, clock: FakeClock) -> None:
        """pending, in flight, dead, sent, and the oldest pending message's age."""
        assert await outbox.status() == OutboxStatus(0, 0, 0, 0, None)
        await commit(outbox, [message(n) for n in range(4)])
        clock.advance(5.0)
        await outbox.claim("other", lease=30.0, limit=1)
        await relay(outbox, Sink(), batch_size=1).flush(["m-0001"])
        await relay(
            outbox, Sink(fail={"m-0002": DeliveryFailure("m-0002", "x", retry=False)})
        ).flush(["m-0002"])
        assert await outbox.status() == OutboxStatus(1, 1, 1, 1, 5.0)

    async def test_two_relays_deliver_each_row_once(self, db: Database, clock: FakeClock) -> None:
        """Relays on separate connections, flushing at once, never deliver a row twice."""
        sink = Sink()
        async with db.make(clock=clock) as first, db.make(clock=clock) as second:
            await commit(first, [message(n) for n in range(200)])
            relays = [relay(store, sink, batch_size=7) for store in (first, second, first)]
            async with anyio.create_task_group() as tasks:
                for r in relays:
                    tasks.start_soon(r.flush)
        assert sorted(sink.ids) == [f"m-{n:04d}" for n in range(200)]

    async def test_order_per_group_holds_with_concurrent_relays(
        self, db: Database, clock: FakeClock
    ) -> None:
        """Every group's messages arrive in commit order, though relays share the work."""
        delivered: list[OutboxMessage] = []

        async def send(m: OutboxMessage) -> None:
            await anyio.lowlevel.checkpoint()
            delivered.append(m)

        async with db.make(clock=clock) as first, db.make(clock=clock) as second:
            for start in range(0, 120, 30):
                await commit(
                    first, [message(n, group=f"g{n % 3}") for n in range(start, start + 30)]
                )
            async with anyio.create_task_group() as tasks:
                for store in (first, second, second):
                    tasks.start_soon(relay(store, deliver_each(send), batch_size=4).flush)
        assert sorted(m.id for m in delivered) == [f"m-{n:04d}" for n in range(120)]
        for group in ("g0", "g1", "g2"):
            ids = [m.id for m in delivered if m.group_key == group]
            assert ids == sorted(ids)

    async def test_a_group_leased_to_one_relay_is_held_from_another(
        self, db: Database, clock: FakeClock
    ) -> None:
        """While relay A delivers a group's first rows, relay B gets none of its later ones."""
        order: list[str] = []
        b_tried = anyio.Event()

        async def a_sends(m: OutboxMessage) -> None:
            await b_tried.wait()
            order.append(m.id)

        async def b_sends(m: OutboxMessage) -> None:
            order.append(m.id)

        async with db.make(clock=clock) as first, db.make(clock=clock) as second:
            await commit(first, [message(n, group="g") for n in range(4)] + [message(9)])
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(relay(first, deliver_each(a_sends), batch_size=2).flush)
                with anyio.fail_after(10):
                    while (await second.status()).in_flight == 0:  # A has claimed
                        await anyio.lowlevel.checkpoint()
                assert await relay(second, deliver_each(b_sends)).flush() == 1
                b_tried.set()
        assert order == ["m-0009", "m-0000", "m-0001", "m-0002", "m-0003"]


class TestDrain:
    """drain() flushes, and returns only once no flush of the relay is in progress."""

    async def test_drain_waits_for_a_round_already_running(self, outbox: Outbox) -> None:
        """Row 1 is out with another task's flush: drain sends row 2, then waits for it."""
        in_flight, gate, second_sent = anyio.Event(), anyio.Event(), anyio.Event()
        sent: list[str] = []
        events: list[str] = []

        async def send(m: OutboxMessage) -> None:
            if m.id == "m-0001":
                in_flight.set()
                await gate.wait()
            else:
                second_sent.set()
            sent.append(m.id)

        r = relay(outbox, deliver_each(send))

        async def other_round() -> None:
            await r.flush()
            events.append("round ended")

        async def drain() -> None:
            delivered = await r.drain()
            events.append(f"drained {delivered}")

        await commit(outbox, [message(1)])
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(other_round)
            await in_flight.wait()
            await commit(outbox, [message(2)])  # after the round's claim: not its
            tasks.start_soon(drain)
            await second_sent.wait()
            assert events == []  # row 1 is still out, so drain cannot have returned
            gate.set()
        assert events == ["round ended", "drained 1"]
        assert sorted(sent) == ["m-0001", "m-0002"]
        assert (await outbox.status()).sent == 2

    async def test_drain_alone_is_a_flush_of_everything(self, outbox: Outbox) -> None:
        """With no other round running, drain delivers what is claimable and returns."""
        await commit(outbox, [message(n) for n in range(3)])
        sink = Sink()
        r = relay(outbox, sink, batch_size=2)
        assert await r.drain() == 3
        assert await r.drain() == 0
        assert sink.ids == ["m-0000", "m-0001", "m-0002"]


class TestRunLoop:
    """run() polls at start and on its interval, flushes on notify, and survives errors."""

    async def test_notify_wakes_the_loop(self, outbox: Outbox) -> None:
        """With a long poll interval, a commit is delivered because on_commit notifies."""
        arrived = anyio.Event()

        async def send(m: OutboxMessage) -> None:
            arrived.set()

        r = relay(outbox, deliver_each(send), poll_interval=3600, cleanup_interval=3600)
        outbox.on_commit(r.notify)
        async with anyio.create_task_group() as tasks:
            await tasks.start(r.run)
            await commit(outbox, [message(1)])
            with anyio.fail_after(10):
                await arrived.wait()
            tasks.cancel_scope.cancel()

    async def test_leftovers_are_found_by_the_poll(self, db: Database, clock: FakeClock) -> None:
        """Rows committed with no listener (another process) are delivered by the poll."""
        count = 0
        both = anyio.Event()

        async def send(m: OutboxMessage) -> None:
            nonlocal count
            count += 1
            if count == 2:
                both.set()

        # No NOTIFY on PostgreSQL: the poll alone must find them.
        quiet = {"notify": False} if db.kind == "postgres" else {}
        async with db.make(clock=clock, **quiet) as producer, db.make(clock=clock) as consumer:
            await commit(producer, [message(1)])  # before the relay starts
            r = relay(consumer, deliver_each(send), poll_interval=0.01)
            async with anyio.create_task_group() as tasks:
                await tasks.start(r.run)
                await commit(producer, [message(2)])  # while it runs, not notified
                with anyio.fail_after(10):
                    await both.wait()
                tasks.cancel_scope.cancel()

    async def test_a_failing_store_is_logged_and_polled_again(self, outbox: Outbox) -> None:
        """A store error in the loop does not end it: the next poll tries again."""
        arrived = anyio.Event()
        failures = 0

        class Flaky:
            def __getattr__(self, name: str) -> Any:
                return getattr(outbox, name)

            async def claim(self, owner: str, **options: Any) -> Any:
                nonlocal failures
                if failures < 2:
                    failures += 1
                    raise Boom("database down")
                return await outbox.claim(owner, **options)

            async def cleanup(self, retention: float, *, limit: int = 1000) -> int:
                raise Boom("database down")

        async def send(m: OutboxMessage) -> None:
            arrived.set()

        await commit(outbox, [message(1)])
        r = OutboxRelay(Flaky(), deliver_each(send), poll_interval=0.01)
        async with anyio.create_task_group() as tasks:
            await tasks.start(r.run)
            r.notify(["m-0001"])
            with anyio.fail_after(10):
                await arrived.wait()
            tasks.cancel_scope.cancel()
        assert failures == 2

    async def test_bad_settings_are_refused(self, outbox: Outbox) -> None:
        """batch_size and max_attempts below 1 raise ValueError."""
        with pytest.raises(ValueError, match="batch_size"):
            OutboxRelay(outbox, Sink(), batch_size=0)
        with pytest.raises(ValueError, match="max_attempts"):
            OutboxRelay(outbox, Sink(), max_attempts=0)


class TestSchema:
    """The table is created once, idempotently, with its version recorded."""

    async def test_opening_again_and_concurrently_is_harmless(
        self, db: Database, clock: FakeClock
    ) -> None:
        """Stores opened one after the other and eight at once share one table, version 2."""
        async with db.make(clock=clock) as store:
            await commit(store, [message(1)])
        async with anyio.create_task_group() as tasks:
            stores = [db.make(clock=clock) for _ in range(8)]
            for store in stores:
                tasks.start_soon(store.status)
        for store in stores:
            assert (await store.status()).pending == 1
            await store.aclose()
        rows = db.query(
            "SELECT version FROM messagebus_schema WHERE table_name = 'messagebus_outbox'"
        )
        assert rows == [(SCHEMA_VERSION,)]

    async def test_a_newer_schema_version_is_refused(self, db: Database) -> None:
        """A table recorded with a later version raises SchemaVersionError, naming it."""
        async with db.make() as store:
            await store.status()
        db.query("UPDATE messagebus_schema SET version = 99 WHERE table_name = 'messagebus_outbox'")
        with pytest.raises(SchemaVersionError, match="schema version 99"):
            async with db.make():
                pass  # pragma: no cover

    async def test_a_bad_table_name_is_refused(self, db: Database) -> None:
        """Table names must be plain identifiers."""
        with pytest.raises(ValueError, match="table name"):
            db.make(table="posts; DROP TABLE posts")

    async def test_a_custom_table(self, db: Database) -> None:
        """Another table name keeps its own rows."""
        async with db.make(table="other_outbox") as other, db.make() as default:
            await commit(other, [message(1)])
            assert (await default.status()).pending == 0
            assert (await other.status()).pending == 1


def test_times_are_unix_seconds() -> None:
    """A message made now has created_at near time.time() (T0 is only the tests' fake)."""
    import time

    made = OutboxMessage("x", Destination.local(), b"{}")
    assert abs(made.created_at - time.time()) < 60
    assert made.created_at > T0
