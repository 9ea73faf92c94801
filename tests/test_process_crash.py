"""A process manager killed with SIGKILL after its commit loses no timeout.

The child (tests/process_crash.py) starts an instance whose start requests a timeout,
prints ``committed`` once the transaction committed, and is killed there, before any
relay delivered the timeout (its clock never reaches the due time); or later, once a
relay of it leased the due timeout and before it delivered it. A fresh bus on the same
SQLite file or PostgreSQL schema finds the instance and the timeout in the outbox,
delivers the timeout when due (once the dead relay's lease ran out), and the manager
handles it exactly once.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import attrs
import pytest

from messagebus import Event, MessageBus
from messagebus.process import ProcessRecord
from messagebus.testing import EPOCH, FakeClock
from tests.inbox_support import database_at
from tests.process_crash import LEASE, PROCESS, TIMEOUT, OrderCancelled, payment_process

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class Where:
    """One test's database: the kind, the SQLite path or DSN, the PostgreSQL schema."""

    kind: str
    location: str
    schema: str | None = None

    def args(self) -> list[str]:
        return [self.kind, self.location, *([self.schema] if self.schema else [])]


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest) -> Where:
    if request.param == "sqlite":
        return Where("sqlite", str(request.getfixturevalue("sqlite_path")))
    dsn = request.getfixturevalue("postgres_dsn")
    return Where("postgres", dsn, request.getfixturevalue("postgres_schema"))


async def kill_after(where: Where, marker: str, *args: str) -> None:
    """Run the child until it prints ``marker``, then SIGKILL it."""
    command = [sys.executable, "-m", "tests.process_crash", *where.args(), *args]
    async with await anyio.open_process(command, cwd=ROOT) as process:
        assert process.stdout is not None
        seen = ""
        with anyio.fail_after(60):  # a bound for a stuck child, not a synchronisation
            while marker not in seen:
                seen += (await process.stdout.receive()).decode()
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL


class TestKilledBetweenCommitAndRelay:
    """The committed start and its timeout survive the kill; the timeout runs once."""

    async def test_a_fresh_process_delivers_the_timeout_once(self, where: Where) -> None:
        """Not before it is due; when due, handled once, even with a second relay after."""
        await kill_after(where, "committed")
        clock = FakeClock()
        timed_out: list[str] = []
        seen: list[Event] = []
        database = database_at(where.kind, where.location, where.schema)
        outbox = database.outbox(clock=clock)
        bus = MessageBus(outbox=outbox)
        processes = database.processes(clock=clock)
        payment_process(timed_out).register(
            bus, store=processes, inbox=database.idempotency(clock=clock)
        )
        bus.subscriber(OrderCancelled, seen.append, name="record-cancelled")
        async with database, bus:
            assert bus.relay is not None
            assert await processes.get(PROCESS, "o-1") == ProcessRecord(
                '{"order_id":"o-1"}', 1, 1, False
            )
            assert (await outbox.status()).scheduled == 1
            await bus.relay.drain()
            await clock.advance(TIMEOUT - 1)
            await bus.relay.drain()
            assert timed_out == []
            await clock.advance(1)
            await bus.relay.drain()
            assert timed_out == ["o-1"]
            assert seen == [OrderCancelled("o-1")]
            record = await processes.get(PROCESS, "o-1")
        assert record == ProcessRecord(None, 1, 2, True)
        # Another process's relay, later: nothing is left to deliver, nothing runs again.
        again = database_at(where.kind, where.location, where.schema)
        later = FakeClock(start=clock.time() + 60)
        later_outbox = again.outbox(clock=later)
        second = MessageBus(outbox=later_outbox)
        payment_process(timed_out).register(
            second, store=again.processes(clock=later), inbox=again.idempotency(clock=later)
        )
        async with again, second:
            assert second.relay is not None
            assert await second.relay.drain() == 0
            status = await later_outbox.status()
        assert timed_out == ["o-1"]
        assert (status.sent, status.pending, status.scheduled, status.dead) == (2, 0, 0, 0)

    async def test_a_timeout_leased_by_the_killed_relay_comes_back_after_the_lease(
        self, where: Where
    ) -> None:
        """Leased when due, then killed: not delivered while leased, then handled once."""
        await kill_after(where, "claimed", "claim")
        clock = FakeClock(start=EPOCH + TIMEOUT)
        timed_out: list[str] = []
        database = database_at(where.kind, where.location, where.schema)
        bus = MessageBus(outbox=database.outbox(clock=clock))
        processes = database.processes(clock=clock)
        payment_process(timed_out).register(
            bus, store=processes, inbox=database.idempotency(clock=clock)
        )
        bus.subscriber(OrderCancelled, lambda event: None, name="record-cancelled")
        async with database, bus:
            assert bus.relay is not None
            assert await bus.relay.drain() == 0  # still leased by the dead relay
            assert timed_out == []
            await clock.advance(LEASE)
            await bus.relay.drain()
            assert timed_out == ["o-1"]
            await bus.relay.drain()
            record = await processes.get(PROCESS, "o-1")
        assert timed_out == ["o-1"]
        assert record == ProcessRecord(None, 1, 2, True)
