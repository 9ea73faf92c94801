"""The blog's paid subscriptions: a process manager that waits for a payment, or cancels.

A reader asks for a paid subscription to an author (``SubscriptionRequested``): the
``billing.subscription`` process starts, sends the reader an invoice (``SendInvoice``)
and schedules its own deadline (``CancelUnpaidSubscription``, due after
:data:`PAYMENT_WINDOW`). A payment in time (``PaymentReceived``) activates the
subscription and completes the process, so the deadline, when it comes, is ignored; a
deadline that finds the process still waiting cancels the subscription. The state, the
invoice and the deadline commit in one transaction with the inbox record of the message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

import attrs

from messagebus import Command, Envelope, Event, Message, MessageBus
from messagebus.extension import Clock, Transport
from messagebus.middleware import LoggingMiddleware
from messagebus.process import Process, ProcessManager

if TYPE_CHECKING:  # the demo needs no PostgreSQL; a test may give it one
    from messagebus.postgres import PostgresDatabase
    from messagebus.sqlite import SQLiteDatabase

PAYMENT_WINDOW = timedelta(minutes=30)
"""How long a requested subscription waits for its payment before it is cancelled."""


@attrs.frozen
class SubscriptionRequested(Event, name="billing.subscription.requested"):
    """A reader asked for a paid subscription to an author's posts."""

    subscription_id: str
    reader: str
    author: str
    amount_cents: int


@attrs.frozen
class PaymentReceived(Event, name="billing.payment.received"):
    """The payment provider reports a payment for a subscription."""

    subscription_id: str
    amount_cents: int


@attrs.frozen
class SendInvoice(Command[None], name="billing.invoice.send"):
    """Send a reader the invoice of a subscription."""

    subscription_id: str
    reader: str
    amount_cents: int


@attrs.frozen
class CancelUnpaidSubscription(Command[None], name="billing.subscription.cancel-unpaid"):
    """The subscription's payment deadline (a timeout the process schedules for itself)."""

    subscription_id: str


@attrs.frozen
class SubscriptionActivated(Event, name="billing.subscription.activated"):
    """A subscription was paid for: the reader gets the author's paid posts."""

    subscription_id: str
    reader: str
    author: str


@attrs.frozen
class SubscriptionCancelled(Event, name="billing.subscription.cancelled"):
    """A subscription was cancelled before it began."""

    subscription_id: str
    reader: str
    reason: str


@attrs.define
class Subscription:
    """The state of one subscription's process while it waits for the payment."""

    reader: str
    author: str
    amount_cents: int


subscriptions: ProcessManager[Subscription] = ProcessManager("billing.subscription", Subscription)
"""The subscription process, correlated by ``subscription_id``."""


@subscriptions.starts(SubscriptionRequested, correlate=lambda event: event.subscription_id)
async def requested(event: SubscriptionRequested, process: Process[Subscription]) -> Subscription:
    """Send the invoice and set the payment deadline."""
    process.send(SendInvoice(event.subscription_id, event.reader, event.amount_cents))
    process.schedule(CancelUnpaidSubscription(event.subscription_id), delay=PAYMENT_WINDOW)
    return Subscription(event.reader, event.author, event.amount_cents)


@subscriptions.handles(PaymentReceived, correlate=lambda event: event.subscription_id)
async def paid(state: Subscription, event: PaymentReceived, process: Process[Subscription]) -> None:
    """Activate the subscription; the deadline will find the process completed."""
    process.publish(SubscriptionActivated(process.key, state.reader, state.author))
    process.complete()


@subscriptions.handles(CancelUnpaidSubscription, correlate=lambda command: command.subscription_id)
async def deadline(
    state: Subscription, command: CancelUnpaidSubscription, process: Process[Subscription]
) -> None:
    """No payment came in time: cancel."""
    reason = f"no payment within {PAYMENT_WINDOW.total_seconds() / 60:g} minutes"
    process.publish(SubscriptionCancelled(process.key, state.reader, reason))
    process.complete()


@attrs.define
class Billing:
    """What the billing service did outside its database: invoices and notices it sent."""

    invoices: list[str] = attrs.field(factory=list)
    notices: list[str] = attrs.field(factory=list)


def build_billing(
    billing: Billing,
    database: SQLiteDatabase | PostgresDatabase,
    *,
    transport: Transport | None = None,
    clock: Clock | None = None,
    outgoing: Iterable[Callable[[Envelope[Message]], Envelope[Message]]] = (),
) -> MessageBus:
    """Return the billing service's bus: the subscription process and what it talks to.

    Invoices and the readers' notices land in ``billing``. The process's state, its
    inbox and the outbox (where its deadlines wait) share ``database`` (SQLite in the
    demo, or PostgreSQL). Messages stay in
    the process, or travel on ``transport``; ``clock`` (a fake clock in the demo and in
    tests) rules the deadlines; ``outgoing`` hooks go to the bus (a test's
    :func:`~messagebus.testing.record_outgoing`).
    """
    now = time.time if clock is None else clock
    bus = MessageBus(
        service="billing",
        transport=transport,
        outbox=database.outbox(clock=now),
        middleware=[LoggingMiddleware()],
        source="/billing",
        outgoing=outgoing,
    )

    @bus.handler(SendInvoice, name="send-invoice")
    async def send_invoice(command: SendInvoice) -> None:
        billing.invoices.append(
            f"{command.reader}: {command.amount_cents / 100:.2f} for {command.subscription_id}"
        )

    @bus.subscriber(SubscriptionActivated, name="welcome-subscriber")
    async def welcome(event: SubscriptionActivated) -> None:
        billing.notices.append(f"{event.reader}: welcome to {event.author}'s paid posts")

    @bus.subscriber(SubscriptionCancelled, name="tell-cancelled")
    async def tell_cancelled(event: SubscriptionCancelled) -> None:
        billing.notices.append(f"{event.reader}: subscription cancelled, {event.reason}")

    subscriptions.register(
        bus, store=database.processes(clock=now), inbox=database.idempotency(clock=now)
    )
    return bus
