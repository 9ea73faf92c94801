"""Running a handler inside a unit of work: its writes and its messages commit together."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from messagebus._dispatch._run import take_follow_ups
from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus._middleware import CallNext

if TYPE_CHECKING:
    from messagebus._bus import MessageBus

__all__ = ["UnitOfWorkMiddleware"]


@attrs.frozen
class UnitOfWorkMiddleware:
    """Runs each handler run it wraps in a unit of work of ``bus``'s outbox.

    The handler reaches the transaction as ``ctx.unit_of_work`` (or
    :func:`messagebus.current_unit_of_work`) for its own SQL. Its ``ctx.publish`` /
    ``ctx.send`` follow-ups are written to the outbox in that transaction, not
    dispatched: they are delivered by the relay after the commit. If the handler (or any
    middleware inside this one) raises, its writes and its messages roll back together.

    Place it outside idempotency middleware (so an idempotency store on the same
    database records the key in the handler's transaction) and inside retries (each
    attempt gets a transaction of its own): ``[RetryMiddleware(), UnitOfWorkMiddleware(bus),
    IdempotencyMiddleware(store)]``.

    Raises (from the run):
        BusStateError: ``bus`` has no outbox.
    """

    bus: MessageBus

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Run the rest of the chain in a transaction; write its follow-ups into it."""
        async with self.bus.unit_of_work() as unit:
            result = await call_next(envelope)
            # Written to the outbox instead: taken, so the bus does not dispatch them too.
            unit.add(take_follow_ups())
        return result
