"""Dead letters in a dictionary, for development and tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from messagebus._errors import InvalidArgumentError
from messagebus.dead_letters._record import DeadLetter

__all__ = ["InMemoryDeadLetterStore", "matches"]


class InMemoryDeadLetterStore:
    """Keeps dead letters in a dictionary in this process.

    Limits: nothing survives the process, nothing is shared with other processes, and
    nothing bounds its size. For development and tests. Task-safe within one event loop
    (no method awaits while it changes the dictionary).
    """

    def __init__(self) -> None:
        self._letters: dict[str, DeadLetter] = {}

    async def add(self, dead_letter: DeadLetter) -> None:
        """Keep ``dead_letter``."""
        self._letters[dead_letter.id] = dead_letter

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """Return the record with this id, or None."""
        return self._letters.get(dead_letter_id)

    async def list(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[DeadLetter]:
        """Return records matching every filter given, oldest last failure first."""
        if limit is not None and limit < 0:
            raise InvalidArgumentError(f"limit must be >= 0, not {limit}")
        found = sorted(
            (
                letter
                for letter in self._letters.values()
                if matches(letter, message_type, handler, since, until)
            ),
            key=lambda letter: (letter.last_failed_at, letter.id),
        )
        return tuple(found if limit is None else found[:limit])

    async def delete(self, dead_letter_id: str) -> bool:
        """Remove the record with this id; return whether there was one."""
        return self._letters.pop(dead_letter_id, None) is not None

    async def purge(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        until: datetime | None = None,
    ) -> int:
        """Remove every record matching the filters given; return how many went."""
        doomed = [
            letter.id
            for letter in self._letters.values()
            if matches(letter, message_type, handler, None, until)
        ]
        for letter_id in doomed:
            del self._letters[letter_id]
        return len(doomed)


def matches(
    letter: DeadLetter,
    message_type: str | None,
    handler: str | None,
    since: datetime | None,
    until: datetime | None,
) -> bool:
    """Tell whether ``letter`` passes the store filters (None means any)."""
    return (
        (message_type is None or letter.message_type == message_type)
        and (handler is None or letter.handler == handler)
        and (since is None or letter.last_failed_at >= since)
        and (until is None or letter.last_failed_at < until)
    )
