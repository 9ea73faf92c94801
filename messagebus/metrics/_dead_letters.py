"""Counting dead letters: a store that wraps the bus's own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from messagebus.dead_letters import DeadLetter, InMemoryDeadLetterStore
from messagebus.extension import DeadLetterStore
from messagebus.metrics._counters import Counters

__all__ = ["CountingDeadLetterStore"]


class CountingDeadLetterStore:
    """A dead-letter store that counts new records, then keeps them in ``store``.

    Give it to the bus, ``MessageBus(dead_letters=CountingDeadLetterStore(store,
    counters))``: every record added under an id the store does not hold yet adds one to
    ``counters.of(record.handler).dead_lettered``. Every method delegates to ``store``;
    the bus does not open dead letter stores, so open and close ``store`` yourself as
    before.

    Args:
        store: where the records are kept (in memory if None).
        counters: where the counts go.
    """

    def __init__(self, store: DeadLetterStore | None = None, counters: Counters | None = None):
        self.store: DeadLetterStore = InMemoryDeadLetterStore() if store is None else store
        self.counters = Counters() if counters is None else counters

    async def add(self, dead_letter: DeadLetter) -> None:
        """Keep ``dead_letter`` in the store; count it if its id is new there."""
        # A failed replay re-adds its record under the same id: one message, counted once.
        # The look-up costs a read per dead letter, a rare path.
        new = await self.store.get(dead_letter.id) is None
        await self.store.add(dead_letter)
        if new:
            self.counters.of(dead_letter.handler).dead_lettered += 1

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """Return the store's record with this id, or None."""
        return await self.store.get(dead_letter_id)

    async def list(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[DeadLetter]:
        """Return the store's records matching every filter given."""
        return await self.store.list(
            message_type=message_type, handler=handler, since=since, until=until, limit=limit
        )

    async def delete(self, dead_letter_id: str) -> bool:
        """Remove the store's record with this id; return whether there was one."""
        return await self.store.delete(dead_letter_id)

    async def purge(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        until: datetime | None = None,
    ) -> int:
        """Remove the store's records matching the filters given; return how many went."""
        return await self.store.purge(message_type=message_type, handler=handler, until=until)
