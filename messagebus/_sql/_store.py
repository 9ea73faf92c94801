"""The lifecycle every SQL store shares: ``async with`` opens, :meth:`aclose` closes.

Contract: a store subclasses :class:`SQLStore` and sets ``self._database`` to an object
with ``async open()`` (connect and set up the schema if not done yet; raises
:class:`anyio.ClosedResourceError` once closed) and ``async aclose()`` (idempotent; later
calls raise :class:`anyio.ClosedResourceError`). Entering the store opens the
database; leaving it, or :meth:`SQLStore.aclose`, closes it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

__all__ = ["SQLStore"]


class _Database(Protocol):
    async def open(self) -> None: ...

    async def aclose(self) -> None: ...


_D = TypeVar("_D", bound=_Database)


class SQLStore(Generic[_D]):
    """Base of the SQL stores: ``async with`` and :meth:`aclose` over ``self._database``."""

    _database: _D

    async def __aenter__(self) -> Self:
        await self._database.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Refuse further calls; close the store's connection, or the pool it made."""
        await self._database.aclose()
