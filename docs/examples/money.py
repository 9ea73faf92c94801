"""A custom type for the codec example: an amount with its currency, as text."""

from decimal import Decimal

import attrs

from messagebus import MessageBus


@attrs.frozen
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

    @classmethod
    def parse(cls, text: str) -> "Money":
        amount, currency = text.split(" ")
        return cls(Decimal(amount), currency)


bus = MessageBus()
