"""An application module for the AsyncAPI tests: an orders service on SQS with routes.

It handles a command, subscribes to an event from another service, publishes its own
event, and sends a command to the payments service's queue (a route): the document
shows its queue, the payments queue and the topics, by their SQS and SNS names.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import attrs

from messagebus import Command, Context, Event, MessageBus
from messagebus.extension import Transport
from messagebus.transports import QueueSpec
from messagebus.transports.sqs import SQSTransport


@attrs.frozen
class Line:
    sku: str
    quantity: int


@attrs.frozen
class PlaceOrder(Command[None], name="shop.order.place"):
    """Place an order for a customer."""

    order_id: UUID
    lines: list[Line]


@attrs.frozen
class OrderPlaced(Event, name="shop.order.placed"):
    """An order was placed."""

    order_id: UUID
    total: Decimal


@attrs.frozen
class ChargeCard(Command[None], name="payments.card.charge"):
    order_id: UUID
    amount: Decimal


@attrs.frozen
class CardCharged(Event, name="payments.card.charged"):
    order_id: UUID


def build(transport: Transport, *, fifo: bool = False) -> MessageBus:
    """The orders service on ``transport``."""
    bus = MessageBus(
        transport=transport,
        service="orders",
        source="/orders",
        routes={ChargeCard: "payments"},
        queue=QueueSpec("orders", fifo=fifo),
    )

    @bus.handler(PlaceOrder)
    async def place(command: PlaceOrder, ctx: Context[PlaceOrder]) -> None:
        ctx.publish(OrderPlaced(command.order_id, Decimal("9.99")))
        ctx.send(ChargeCard(command.order_id, Decimal("9.99")))

    @bus.subscriber(CardCharged, name="mark-paid")
    async def mark_paid(event: CardCharged) -> None:
        return None

    bus.declare(OrderPlaced)
    return bus


bus = build(SQSTransport(region="eu-west-1", prefix="shop-"))
