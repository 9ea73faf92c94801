"""The test kit drives a process manager: given messages, expect messages and timeouts."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from messagebus import Envelope, Event, InvalidArgumentError, MessageBus
from messagebus.demo import (
    PAYMENT_WINDOW,
    Billing,
    CancelUnpaidSubscription,
    PaymentReceived,
    SendInvoice,
    Subscription,
    SubscriptionActivated,
    SubscriptionCancelled,
    SubscriptionRequested,
    build_billing,
    subscriptions,
)
from messagebus.postgres import PostgresDatabase
from messagebus.process import Process, ProcessManager
from messagebus.sqlite import SQLiteDatabase
from messagebus.testing import BusHarness, FakeClock, ProcessUnderTest, record_outgoing
from messagebus.transports.memory import InMemoryTransport

pytestmark = pytest.mark.anyio


@attrs.frozen
class Measured(Event, name="test.kit.measured"):
    value: float


LINUS = SubscriptionRequested("s-1", "linus", "ada", 500)
CANCELLED = "linus: subscription cancelled, no payment within 30 minutes"


@attrs.define
class Billed:
    """The billing service under test: its harness, its process, what it did."""

    harness: BusHarness
    process: ProcessUnderTest[Subscription]
    billing: Billing


async def billed(database: Any, *, transport: bool = False) -> AsyncIterator[Billed]:
    clock = FakeClock()
    billing = Billing()
    bus = build_billing(
        billing,
        database,
        transport=InMemoryTransport(clock=clock) if transport else None,
        clock=clock,
        outgoing=[record_outgoing],
    )
    async with database, BusHarness.running(bus, clock) as harness:
        yield Billed(harness, harness.process(subscriptions, database.processes()), billing)


@pytest.fixture(params=["sqlite", "postgres"])
async def kit(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Billed]:
    """The billing service, messages in the process, on a fake clock, on either database."""
    if request.param == "sqlite":
        database: Any = SQLiteDatabase(tmp_path / "billing.sqlite3")
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        database = PostgresDatabase(dsn, schema=request.getfixturevalue("postgres_schema"))
    async for made in billed(database):
        yield made


@pytest.fixture
async def kit_on_queue(tmp_path: Path) -> AsyncIterator[Billed]:
    """The billing service on the memory transport, on a fake clock."""
    async for made in billed(SQLiteDatabase(tmp_path / "billing.sqlite3"), transport=True):
        yield made


class TestGiven:
    """Messages given to the process run it; what it commits is what the test sees."""

    async def test_a_start_sends_an_invoice_and_schedules_the_deadline(self, kit: Billed) -> None:
        """The starting message's command and timeout are recorded; the state is committed."""
        await kit.process.given(LINUS)

        assert await kit.process.state("s-1") == Subscription("linus", "ada", 500)
        kit.harness.recorder.assert_sent(SendInvoice, subscription_id="s-1", amount_cents=500)
        timeout = kit.harness.assert_scheduled(
            CancelUnpaidSubscription, due_in=PAYMENT_WINDOW, subscription_id="s-1"
        )
        assert timeout.correlation_id == kit.harness.recorder.sent[0].correlation_id
        assert kit.harness.assert_scheduled(CancelUnpaidSubscription) is timeout
        kit.harness.recorder.assert_nothing_published()
        assert kit.billing.invoices == ["linus: 5.00 for s-1"]  # the invoice was delivered

    async def test_a_payment_in_time_activates_and_completes(self, kit: Billed) -> None:
        """Messages given in order each settle before the next."""
        await kit.process.given(LINUS, PaymentReceived("s-1", 500))

        kit.harness.recorder.assert_published(SubscriptionActivated, subscription_id="s-1")
        await kit.process.assert_completed("s-1")
        assert kit.billing.notices == ["linus: welcome to ada's paid posts"]

    async def test_a_rolled_back_run_records_nothing(self, tmp_path: Path) -> None:
        """A run whose transaction rolls back after staging a message: nothing recorded.

        The first event is written to the outbox, then the second cannot be encoded
        (NaN), so the unit of work rolls back: the first never leaves either.
        """
        database = SQLiteDatabase(tmp_path / "failing.sqlite3")
        bus = MessageBus(outbox=database.outbox(), outgoing=[record_outgoing])
        refusing = ProcessManager("test.refusing", Subscription)

        @refusing.starts(SubscriptionRequested, correlate=lambda event: event.subscription_id)
        async def start(
            event: SubscriptionRequested, process: Process[Subscription]
        ) -> Subscription:
            process.publish(SubscriptionActivated("s-1", "linus", "ada"))
            process.publish(Measured(math.nan))
            return Subscription(event.reader, event.author, event.amount_cents)

        bus.declare(SubscriptionActivated, Measured)
        refusing.register(bus, store=database.processes(), inbox=database.idempotency())
        async with database, BusHarness.running(bus) as harness:
            process = harness.process(refusing, database.processes())
            await process.given(LINUS)

            harness.recorder.assert_nothing_published()
            await process.assert_not_started("s-1")
            letter = await harness.assert_dead_lettered(SubscriptionRequested)
            assert letter.error_type.endswith("EncodeError")


class TestAdvance:
    """Advancing the harness's clock fires the timeouts that fell due, and only those."""

    async def test_an_unpaid_subscription_is_cancelled_at_its_deadline(self, kit: Billed) -> None:
        """A second early, nothing; at the due time, the reaction is recorded."""
        await kit.process.given(LINUS)

        await kit.harness.advance(PAYMENT_WINDOW - timedelta(seconds=1))
        kit.harness.recorder.assert_nothing_published()
        assert (await kit.process.state("s-1")).reader == "linus"

        await kit.harness.advance(1)
        cancelled = kit.harness.recorder.assert_published(
            SubscriptionCancelled, subscription_id="s-1", reason="no payment within 30 minutes"
        )
        await kit.process.assert_completed("s-1")
        assert kit.billing.notices == [
            "linus: subscription cancelled, no payment within 30 minutes"
        ]
        (timeout,) = kit.harness.recorder.scheduled
        assert cancelled.causation_id == timeout.message_id  # the timeout caused it

    async def test_a_deadline_after_payment_is_ignored(self, kit: Billed) -> None:
        """The timeout is delivered and finds a tombstone: no reaction, no dead letter."""
        await kit.process.given(LINUS, PaymentReceived("s-1", 500))

        await kit.harness.advance(PAYMENT_WINDOW)

        published = [envelope.message for envelope in kit.harness.recorder.published]
        assert published == [SubscriptionActivated("s-1", "linus", "ada")]
        assert len(await kit.harness.bus.dead_letters.list()) == 0
        assert kit.harness.bus.outbox is not None
        status = await kit.harness.bus.outbox.status()
        assert (status.scheduled, status.pending) == (0, 0)  # the deadline came, and went

    async def test_on_the_memory_transport(self, kit_on_queue: Billed) -> None:
        """With a transport, settling runs the worker until idle; the deadline comes too."""
        kit = kit_on_queue
        await kit.process.given(LINUS)
        assert kit.billing.invoices == ["linus: 5.00 for s-1"]

        await kit.harness.advance(PAYMENT_WINDOW)

        kit.harness.recorder.assert_published(SubscriptionCancelled, subscription_id="s-1")
        assert kit.billing.notices == [
            "linus: subscription cancelled, no payment within 30 minutes"
        ]

    async def test_a_negative_advance_is_refused(self, kit: Billed) -> None:
        """Time moves forward only."""
        with pytest.raises(InvalidArgumentError, match="negative"):
            await kit.harness.advance(-1)


class TestFailures:
    """A failing assertion says what was expected and lists what there is."""

    async def test_a_timeout_due_at_another_time(self, kit: Billed) -> None:
        """The message names the due time wanted and lists what was recorded, with due times."""
        await kit.process.given(LINUS)
        with pytest.raises(AssertionError) as failure:
            kit.harness.assert_scheduled(
                CancelUnpaidSubscription, due_in=timedelta(minutes=15), subscription_id="s-1"
            )
        message = str(failure.value)
        first, *listed = message.splitlines()
        assert first == (
            "expected CancelUnpaidSubscription(subscription_id='s-1') to be scheduled due at "
            "2024-05-01T12:15:00.000+00:00; 2 messages recorded:"
        )
        assert listed[0].startswith(
            "  sent SendInvoice(subscription_id='s-1', reader='linus', amount_cents=500) "
            "by billing.subscription:billing.subscription.requested (correlation "
        )
        assert listed[1].startswith(
            "  scheduled CancelUnpaidSubscription(subscription_id='s-1') due at "
            "2024-05-01T12:30:00.000+00:00 by billing.subscription:billing.subscription.requested"
        )

    async def test_a_scheduled_message_is_neither_sent_nor_published(self, kit: Billed) -> None:
        """A timeout is recorded as scheduled, so assert_sent does not match it."""
        await kit.process.given(LINUS)
        with pytest.raises(AssertionError, match="to be sent; 2 messages recorded"):
            kit.harness.recorder.assert_sent(CancelUnpaidSubscription, subscription_id="s-1")
        with pytest.raises(AssertionError, match="expected nothing scheduled; 2 messages"):
            kit.harness.recorder.assert_nothing_scheduled()

    async def test_the_state_of_an_instance_never_started(self, kit: Billed) -> None:
        """No instance: said so, with the two reasons there can be."""
        with pytest.raises(AssertionError) as failure:
            await kit.process.state("nobody")
        assert str(failure.value) == (
            "process 'billing.subscription' has no instance 'nobody' (never started, or "
            "its tombstone expired)"
        )
        with pytest.raises(AssertionError, match="no instance 'nobody'"):
            await kit.process.assert_completed("nobody")

    async def test_the_state_of_a_completed_instance(self, kit: Billed) -> None:
        """A completed instance has a tombstone, not a state."""
        await kit.process.given(LINUS, PaymentReceived("s-1", 500))
        with pytest.raises(AssertionError) as failure:
            await kit.process.state("s-1")
        assert str(failure.value) == (
            "process 'billing.subscription' instance 's-1' has completed: it has no state "
            "left, only a tombstone"
        )
        with pytest.raises(AssertionError, match="instance 's-1'; it is completed"):
            await kit.process.assert_not_started("s-1")

    async def test_a_running_instance_is_not_completed(self, kit: Billed) -> None:
        """The message shows the running instance's state."""
        await kit.process.given(LINUS)
        with pytest.raises(AssertionError) as failure:
            await kit.process.assert_completed("s-1")
        assert str(failure.value) == (
            "expected process 'billing.subscription' instance 's-1' to have completed; it "
            'is running (version 1), state: {"amount_cents":500,"author":"ada","reader":"linus"}'
        )
        with pytest.raises(AssertionError, match="it is running, state: "):
            await kit.process.assert_not_started("s-1")


async def test_a_process_needs_a_bus_with_an_outbox() -> None:
    """Process managers run on an outbox; the harness says so at once."""
    bus = MessageBus()
    async with BusHarness.running(bus) as harness:
        with pytest.raises(InvalidArgumentError, match="outbox"):
            harness.process(subscriptions, object())  # type: ignore[arg-type]


async def test_settle_on_an_in_process_bus_does_nothing() -> None:
    """Dispatch in the process is done when publish returns: nothing is left to settle."""
    seen: list[Event] = []
    bus = MessageBus()
    bus.subscriber(SubscriptionActivated, seen.append, name="seen")
    async with BusHarness.running(bus) as harness:
        await bus.publish(SubscriptionActivated("s-1", "linus", "ada"))
        await harness.settle()
    assert seen == [SubscriptionActivated("s-1", "linus", "ada")]


def test_record_outgoing_without_a_recorder_changes_nothing() -> None:
    """The hook returns the envelope as it came when no recorder is entered."""
    envelope = Envelope(LINUS)
    assert record_outgoing(envelope) is envelope
