"""Where process managers keep their instances: the store contract."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = ["ProcessRecord", "ProcessStore"]


@attrs.frozen
class ProcessRecord:
    """One process instance as stored.

    Attributes:
        state: the state's JSON; None once the instance completed (a tombstone).
        state_version: the state type's version that wrote ``state``.
        version: the row's version, 1 when started, one more at each save: the
            optimistic check a save makes.
        completed: the instance completed; late messages are recognised by it until the
            tombstone expires.
    """

    state: str | None
    state_version: int
    version: int
    completed: bool


@runtime_checkable
class ProcessStore(Protocol):
    """Keeps process instances by (process name, correlation key), in the outbox's database.

    Contract. The ``*_in`` methods run on the caller's connection, inside its open
    transaction (a unit of work of the outbox made from the same database object, which
    :attr:`database` names for the identity check), so that an instance's change, the
    messages its handler sent and the inbox record of the message it handled commit or
    roll back together. They are blocking (called through ``UnitOfWork.run``).

    - :meth:`load_in` returns the instance, or None, and holds it against concurrent
      changes until the transaction ends (PostgreSQL: ``FOR UPDATE``; SQLite: the
      transaction's write lock, taken at ``BEGIN IMMEDIATE``).
    - :meth:`start_in` inserts a new instance and returns True; if one exists (a racing
      start committed first) it inserts nothing and returns False. A start racing an
      uncommitted one waits for it.
    - :meth:`save_in` and :meth:`complete_in` change the instance only at the row
      version the caller loaded; otherwise they raise
      :class:`~messagebus.ProcessConflictError` and change nothing.
    - A completed instance keeps a tombstone (no state) for ``retention`` seconds;
      :meth:`cleanup` removes expired tombstones in bounded batches.
    """

    @property
    def database(self) -> object:
        """The database object the store is on (the outbox's, for one transaction)."""

    def load_in(self, connection: Any, process: str, key: str) -> ProcessRecord | None:
        """Return the instance (locked for the transaction), or None."""

    def start_in(
        self, connection: Any, process: str, key: str, state: str, state_version: int
    ) -> bool:
        """Insert a new instance at version 1; return False if one exists."""

    def save_in(
        self,
        connection: Any,
        process: str,
        key: str,
        *,
        state: str,
        state_version: int,
        expected_version: int,
    ) -> None:
        """Store ``state`` as the next version, if the row is still at ``expected_version``."""

    def complete_in(
        self, connection: Any, process: str, key: str, *, expected_version: int, retention: float
    ) -> None:
        """Replace the instance by a tombstone kept ``retention`` seconds."""

    async def get(self, process: str, key: str) -> ProcessRecord | None:
        """Return the instance as committed, or None (for operators and tests)."""

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired tombstones; return how many went."""
