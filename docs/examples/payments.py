"""Names the payments fragments use: the command, its handler, a bus."""

import attrs

from messagebus import Command, MessageBus


@attrs.frozen
class Receipt:
    order: int
    amount: int


@attrs.frozen
class ChargeCard(Command[Receipt], name="shop.card.charge"):
    order: int
    amount: int


@attrs.frozen
class ProcessPayment(Command[Receipt], name="shop.payment.process"):
    order: int
    amount: int


async def charge_card(command: ChargeCard) -> Receipt:
    return Receipt(command.order, command.amount)


async def process_payment(command: ProcessPayment) -> Receipt:
    return Receipt(command.order, command.amount)


def register(bus: MessageBus) -> None:
    """Register the payment handlers on ``bus`` (what an application module does)."""
    bus.handler(ProcessPayment, process_payment)
