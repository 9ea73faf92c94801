"""The lifecycle every SQL store shares: which database it is on, ``async with``, ``aclose``.

Contract: a store subclasses :class:`SQLStore` and calls :meth:`SQLStore._on` in its
constructor with the database object it was given (a
:class:`~messagebus._sql._database.SharedDatabase`, from ``database.outbox()`` and the
like) or, when it was made alone, one it made for itself. Then:

- :attr:`SQLStore.database` is that object, for good: stores on the same object share
  one connection (SQLite) or one pool (PostgreSQL), hence transactions.
- A store made alone holds its private database from the start; a store made from a
  database object holds nothing until it is entered.
- Entering the store (``async with``) holds the database, if the store does not hold it
  already, and opens it; leaving it, or :meth:`SQLStore.aclose`, lets go of the store's
  hold, if it has one. The database closes when its last holder lets go (see
  :mod:`messagebus._sql._database`): so a store made alone closes its database as it
  always did, and a store made from a database object never closes it under the
  other stores, or under the database's own ``async with``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Generic, Self, TypeVar

from messagebus._sql._database import SharedDatabase

__all__ = ["SQLStore"]

_D = TypeVar("_D", bound=SharedDatabase)


class SQLStore(Generic[_D]):
    """Base of the SQL stores: their database, ``async with`` and :meth:`aclose`."""

    _database: _D
    _holding: bool

    def _on(self, database: _D, *, alone: bool) -> None:
        """Use ``database``; ``alone``: it is this store's own, held from now on."""
        self._database = database
        self._holding = alone
        if alone:
            database.hold_now()

    @property
    def database(self) -> _D:
        """The database object this store is on (its own when the store was made alone)."""
        return self._database

    async def __aenter__(self) -> Self:
        if self._holding:
            await self._database.open()
        else:
            await self._database.hold()
            self._holding = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Let go of the store's hold on its database: the last holder closes it.

        A store made alone is the only holder of its database, so this closes it: later
        calls raise :class:`anyio.ClosedResourceError`.
        """
        if self._holding:
            self._holding = False
            await self._database.release()
