"""Scheduled rows in the SQL outboxes: due times, cancelling, the next due time, migration."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import attrs
import pytest

from messagebus import DatabaseMismatchError
from messagebus.outbox import (
    DeliveryFailure,
    OutboxMessage,
    OutboxRelay,
    SchedulingStore,
    Settlement,
    SQLiteOutbox,
)
from messagebus.outbox._sql import SCHEMA_VERSION
from tests.outbox_support import T0, Database, FakeClock, Outbox, Sink, database, message

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    return database(str(request.param), request)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def scheduled(number: int, due: float, *, group: str | None = None) -> OutboxMessage:
    """Message ``number``, due at ``due``."""
    return attrs.evolve(message(number, group=group), due_at=due)


async def commit(store: Outbox, messages: list[OutboxMessage]) -> None:
    async with store.transaction() as tx:
        tx.add(messages)


class TestDueTime:
    """A scheduled row is claimable from its due time on, not a moment before."""

    async def test_not_before_and_exactly_at_the_due_time(
        self, db: Database, clock: FakeClock
    ) -> None:
        """Nothing is delivered a millisecond early; at the due time, it is."""
        sink = Sink()
        async with db.make(clock=clock) as store:
            assert isinstance(store, SchedulingStore)
            await commit(store, [scheduled(1, T0 + 60)])
            relay = OutboxRelay(store, sink)
            assert await relay.flush() == 0
            clock.advance(59.999)
            assert await relay.flush() == 0
            clock.now = T0 + 60
            assert await relay.flush() == 1
        assert sink.ids == ["m-0001"]
        assert sink.delivered[0].due_at == T0 + 60

    async def test_a_due_time_in_the_past_is_due_now(self, db: Database, clock: FakeClock) -> None:
        """A row due before now is delivered at the next flush."""
        sink = Sink()
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0 - 3600)])
            assert await OutboxRelay(store, sink).flush() == 1

    async def test_rows_fall_due_in_due_time_order(self, db: Database, clock: FakeClock) -> None:
        """Committed first but due later is delivered later; one due time: commit order."""
        sink = Sink()
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0 + 20)])
            await commit(store, [scheduled(2, T0 + 10), scheduled(3, T0 + 20)])
            relay = OutboxRelay(store, sink)
            clock.now = T0 + 10
            assert await relay.flush() == 1
            clock.now = T0 + 20
            assert await relay.flush() == 2
        assert sink.ids == ["m-0002", "m-0001", "m-0003"]

    async def test_a_row_not_due_holds_its_group_back_in_nothing(
        self, db: Database, clock: FakeClock
    ) -> None:
        """A later row of the group goes now; the scheduled one takes its place when due."""
        sink = Sink()
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0 + 30, group="g"), message(2, group="g")])
            relay = OutboxRelay(store, sink)
            assert await relay.flush() == 1
            assert await relay.flush([f"m-{n:04d}" for n in (1, 2)]) == 0
            clock.advance(30)
            await commit(store, [message(3, group="g")])
            assert await relay.flush() == 2
        assert sink.ids == ["m-0002", "m-0001", "m-0003"]

    async def test_a_failed_scheduled_row_holds_its_group(
        self, db: Database, clock: FakeClock
    ) -> None:
        """Once tried and backing off, a scheduled row holds later rows of its group back."""
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0, group="g")])
            (entry,) = await store.claim("r", lease=30, limit=10)
            await store.settle("r", Settlement(retry=[(entry.message.id, 5.0, "boom")]))
            await commit(store, [message(2, group="g")])
            assert await store.claim("r", lease=30, limit=10) == []
            clock.advance(5)
            claimed = await store.claim("r", lease=30, limit=10)
        assert [e.message.id for e in claimed] == ["m-0001", "m-0002"]


class TestCancel:
    """cancel(id): a scheduled row not delivered yet is deleted; nothing else is."""

    async def test_cancel_before_delivery(self, db: Database, clock: FakeClock) -> None:
        """True once, then False; the row is never delivered."""
        sink = Sink()
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0 + 60)])
            assert await store.cancel("m-0001") is True
            assert await store.cancel("m-0001") is False
            clock.advance(60)
            assert await OutboxRelay(store, sink).flush() == 0
        assert sink.ids == []

    async def test_cancel_after_delivery_is_false(self, db: Database, clock: FakeClock) -> None:
        """A delivered row cannot be cancelled."""
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0)])
            assert await OutboxRelay(store, Sink()).flush() == 1
            assert await store.cancel("m-0001") is False
            assert (await store.status()).sent == 1

    async def test_only_scheduled_rows_are_cancelled(self, db: Database, clock: FakeClock) -> None:
        """A row sent at once, or an unknown id, is not cancelled."""
        async with db.make(clock=clock) as store:
            await commit(store, [message(1)])
            assert await store.cancel("m-0001") is False
            assert await store.cancel("nope") is False
            assert (await store.status()).pending == 1

    async def test_a_leased_row_is_cancelled_only_once_its_lease_has_run_out(
        self, db: Database, clock: FakeClock
    ) -> None:
        """A relay delivering it now wins; a dead relay's expired lease does not protect it."""
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0)])
            assert len(await store.claim("r", lease=30, limit=10)) == 1
            assert await store.cancel("m-0001") is False
            clock.advance(30)
            assert await store.cancel("m-0001") is True

    async def test_cancel_in_a_transaction_rolls_back_with_it(
        self, db: Database, clock: FakeClock
    ) -> None:
        """Cancelled in a unit of work that fails: the row stays, and is delivered."""
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0)])

            async def cancel_then_fail() -> None:
                async with store.transaction() as tx:
                    assert await store.cancel("m-0001", tx) is True  # type: ignore[arg-type]
                    raise RuntimeError

            with pytest.raises(RuntimeError):
                await cancel_then_fail()
            async with store.transaction() as tx:
                assert await store.cancel("m-0001", tx) is True  # type: ignore[arg-type]
            assert await OutboxRelay(store, Sink()).flush() == 0

    async def test_a_transaction_of_another_database_is_refused(self, db: Database) -> None:
        """Cancelling in a unit of work of another database object is a typed error."""
        async with db.make() as store, db.make() as other, other.transaction() as tx:
            with pytest.raises(DatabaseMismatchError):
                await store.cancel("m-0001", tx)  # type: ignore[arg-type]


class TestUntilDue:
    """until_due(): how long the relay may sleep before a row falls due."""

    async def test_the_next_due_time(self, db: Database, clock: FakeClock) -> None:
        """None with nothing waiting; else seconds to the earliest; rows due now do not count."""
        async with db.make(clock=clock) as store:
            assert await store.until_due() is None
            await commit(store, [message(1), scheduled(2, T0 + 90), scheduled(3, T0 + 30)])
            assert await store.until_due() == 30
            clock.advance(30)
            assert await store.until_due() == 60

    async def test_a_backoff_counts(self, db: Database, clock: FakeClock) -> None:
        """A failed row's retry time is a due time too."""
        async with db.make(clock=clock) as store:
            await commit(store, [message(1)])
            (entry,) = await store.claim("r", lease=30, limit=10)
            await store.settle("r", Settlement(retry=[(entry.message.id, 7.0, "boom")]))
            assert await store.until_due() == 7


class TestStatus:
    """status() counts scheduled rows apart from the pending ones."""

    async def test_scheduled_rows_are_not_pending_until_due(
        self, db: Database, clock: FakeClock
    ) -> None:
        """Not due: ``scheduled``; due: pending, its age counted from its due time."""
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0 + 100)])
            status = await store.status()
            assert (status.pending, status.scheduled, status.oldest_pending_age) == (0, 1, None)
            clock.advance(130)
            status = await store.status()
            assert (status.pending, status.scheduled, status.oldest_pending_age) == (1, 0, 30)


class TestMigration:
    """A table made by the previous version (1) is migrated in place to this one."""

    async def test_a_version_1_table_is_migrated(self, db: Database, clock: FakeClock) -> None:
        """The column is added, the version recorded, old rows kept; scheduling works."""
        sqlite = db.kind == "sqlite"
        db.query(
            _V1_TABLE.format(
                seq="INTEGER PRIMARY KEY AUTOINCREMENT"
                if sqlite
                else "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                float="REAL" if sqlite else "double precision",
            )
        )
        db.query(
            "INSERT INTO messagebus_outbox (id, destination_kind, destination_name, body, "
            f"created_at) VALUES ('old', 'topic', 'blog', {_blob(db)}, {T0})"
        )
        db.query(
            "CREATE TABLE messagebus_schema (table_name text PRIMARY KEY, version integer NOT NULL)"
        )
        db.query("INSERT INTO messagebus_schema VALUES ('messagebus_outbox', 1)")
        sink = Sink()
        async with db.make(clock=clock) as store:
            await commit(store, [scheduled(1, T0 + 5)])
            relay = OutboxRelay(store, sink)
            assert await relay.flush() == 1
            clock.advance(5)
            assert await relay.flush() == 1
        assert sink.ids == ["old", "m-0001"]
        assert db.query(
            "SELECT version FROM messagebus_schema WHERE table_name = 'messagebus_outbox'"
        ) == [(SCHEMA_VERSION,)]


_V1_TABLE = """CREATE TABLE messagebus_outbox (
    seq {seq}, id text NOT NULL UNIQUE, destination_kind text NOT NULL,
    destination_name text NOT NULL, body bytea NOT NULL, group_key text,
    deduplication_id text, created_at {float} NOT NULL,
    status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
    available_at {float} NOT NULL DEFAULT 0, lease_owner text,
    lease_expires_at {float}, last_error text, sent_at {float})"""


def _blob(db: Database) -> str:
    return "X'6f6c64'" if db.kind == "sqlite" else "'\\x6f6c64'::bytea"


class TestRelayWakes:
    """The relay's loop wakes when a row falls due, not at its next poll."""

    async def test_delivered_when_due_with_an_hour_between_polls(self, db: Database) -> None:
        """A row due in 50 ms is delivered although the next poll is an hour away."""
        delivered = anyio.Event()
        ids: list[str] = []

        async def deliver(messages: Sequence[OutboxMessage]) -> list[DeliveryFailure]:
            ids.extend(m.id for m in messages)
            delivered.set()
            return []

        async with db.make() as store:
            relay = OutboxRelay(store, deliver, poll_interval=3600.0)
            store.on_commit(relay.notify)
            async with anyio.create_task_group() as tasks:
                await tasks.start(relay.run)
                due = time.time() + 0.05
                await commit(store, [scheduled(1, due)])
                with anyio.fail_after(30):  # a bound, not a measure: the poll is an hour away
                    await delivered.wait()
                assert time.time() >= due
                tasks.cancel_scope.cancel()
        assert ids == ["m-0001"]


class TestCrash:
    """A producer killed (SIGKILL) between its commit and the due time loses nothing."""

    async def test_killed_after_scheduling(self, db: Database, clock: FakeClock) -> None:
        """The committed schedule is delivered by a new relay when due, and not before."""
        due = T0 + 600
        command = [sys.executable, "-m", "tests.schedule_crash", db.kind, db.location, str(due)]
        async with await anyio.open_process(command, cwd=ROOT) as process:
            assert process.stdout is not None
            seen = ""
            with anyio.fail_after(60):
                while "\n" not in seen:
                    seen += (await process.stdout.receive()).decode()
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
        marker, schedule_id = seen.split()
        assert marker == "committed"
        assert db.titles() == ["scheduled"]
        sink = Sink()
        async with db.make(clock=clock) as store:
            relay = OutboxRelay(store, sink)
            clock.now = due - 0.001
            assert await relay.flush() == 0
            clock.now = due
            assert await relay.flush() == 1
        assert sink.ids == [schedule_id]
        assert b"search.post.index" in sink.delivered[0].body


class TestStoreDown:
    """A failing until_due does not stop the relay."""

    async def test_a_failing_until_due_is_logged_and_delivery_goes_on(
        self, sqlite_path: Path, clock: FakeClock
    ) -> None:
        """The store fails to tell the next due time: logged, and the relay carries on."""
        asked = anyio.Event()
        delivered = anyio.Event()
        ids: list[str] = []

        class Failing(SQLiteOutbox):
            async def until_due(self) -> float | None:
                asked.set()
                raise OSError("down")

        async def deliver(messages: Sequence[OutboxMessage]) -> list[DeliveryFailure]:
            ids.extend(m.id for m in messages)
            delivered.set()
            return []

        async with Failing(sqlite_path, clock=clock) as store:
            relay = OutboxRelay(store, deliver, poll_interval=3600.0)
            store.on_commit(relay.notify)
            async with anyio.create_task_group() as tasks:
                await tasks.start(relay.run)
                await commit(store, [scheduled(1, T0 + 5)])
                with anyio.fail_after(30):
                    await asked.wait()
                clock.advance(5)
                relay.notify(["m-0001"])
                with anyio.fail_after(30):
                    await delivered.wait()
                tasks.cancel_scope.cancel()
        assert ids == ["m-0001"]
