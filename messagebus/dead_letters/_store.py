"""The dead letter store protocol."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from messagebus.dead_letters._record import DeadLetter

__all__ = ["DeadLetterStore"]


class DeadLetterStore(Protocol):
    """Where dead letters are kept, listed, and removed once dealt with.

    Contract for implementations: every method is safe to call from many tasks at once
    (and, for persistent stores, from many processes); once :meth:`add` returns, the
    record is durable as far as the store can make it so; records come back equal to
    what was added (datetimes in UTC, to the microsecond).
    """

    async def add(self, dead_letter: DeadLetter) -> None:
        """Keep ``dead_letter``, replacing any record with the same id in one step."""

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """Return the record with this id, or None."""

    async def list(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[DeadLetter]:
        """Return records matching every filter given, oldest last failure first.

        ``since`` and ``until`` bound ``last_failed_at`` (inclusive, exclusive).
        """

    async def delete(self, dead_letter_id: str) -> bool:
        """Remove the record with this id; return whether there was one."""

    async def purge(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        until: datetime | None = None,
    ) -> int:
        """Remove every record matching the filters given; return how many went."""
