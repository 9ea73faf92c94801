"""One database shared by several stores: who holds it open, and which stores are on it.

:class:`SharedDatabase` is the base of the SQLite connection and the PostgreSQL pool
(:mod:`._sqlite`, :mod:`._postgres`), hence of the public database objects
(:class:`messagebus.sqlite.SQLiteDatabase`, :class:`messagebus.postgres.PostgresDatabase`)
and of the private database a store makes for itself when it is made alone. Contract:

- Holders: the database is open while something holds it. ``async with database:``
  holds it for the block; a store's ``async with`` holds it for the store's block (the
  bus enters its outbox and its event log: two holders); a store made alone holds its
  private database from the start. Each holder lets go once (leaving its block, or the
  store's ``aclose()``); the last one to let go closes the database, for good (calls
  after that raise :class:`anyio.ClosedResourceError`, as a closed store's always
  have). So closing one store never closes the database under another holder.
- Nothing held: calls still open the database lazily (a store used without ``async
  with``); it then stays open until :meth:`SharedDatabase.aclose`, which closes it at
  once whoever holds it.
- Identity: stores are on one database when they were made from the same object:
  :func:`database_of` tells which (the same for a unit of work's transaction), and
  :func:`require_same_database` refuses two that are not, whatever their paths or DSNs
  say (two objects on one file are two connections, hence two transactions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from messagebus._errors import DatabaseMismatchError

__all__ = ["SharedDatabase", "database_of", "require_same_database"]


class SharedDatabase(ABC):
    """A database the stores made on it share; counts its holders (see the module)."""

    def __init__(self) -> None:
        self._holders = 0

    @abstractmethod
    async def open(self) -> None:
        """Connect and set up the pending tables now, if not done yet."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close now, whoever holds it; later calls raise :class:`anyio.ClosedResourceError`."""

    def hold_now(self) -> None:
        """Count one more holder without opening (the database opens at its first call)."""
        self._holders += 1

    async def hold(self) -> None:
        """Count one more holder and open the database; if opening fails, count none."""
        self._holders += 1
        try:
            await self.open()
        except BaseException:
            # Not counted, not closed: a later call may succeed (a server back up).
            self._holders -= 1
            raise

    async def release(self) -> None:
        """Count one holder fewer; the last one closes the database."""
        self._holders -= 1
        if self._holders <= 0:
            await self.aclose()

    async def __aenter__(self) -> Self:
        await self.hold()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


def database_of(resource: object) -> SharedDatabase | None:
    """Return the database ``resource`` (an SQL store or transaction) is on, or None.

    None for anything that is not on a messagebus SQL database (an in-memory store, a
    third party's).
    """
    database = getattr(resource, "database", None)
    return database if isinstance(database, SharedDatabase) else None


def require_same_database(outbox: object, event_log: object) -> None:
    """Refuse an event log that cannot append in the outbox's transactions.

    A unit of work appends its events to the log on the outbox's transaction, so the
    log must be an SQL event log made from the very database object the outbox was
    made from (``database.outbox()`` and ``database.event_log()``). Returns None when
    it is.

    Raises:
        DatabaseMismatchError: the log is not an SQL log (an in-memory one), the outbox
            is not an SQL outbox, or the two are on different database objects, even on
            one file or DSN.
    """
    theirs, ours = database_of(event_log), database_of(outbox)
    if ours is not None and theirs is ours:
        return
    raise DatabaseMismatchError(
        "with an outbox, the event log must be an SQL log on the outbox's database: units "
        f"of work append to it in their own transaction; got {type(event_log).__name__} "
        f"on {_describe(theirs)} and {type(outbox).__name__} on {_describe(ours)}. Make "
        "both from one database object: database.outbox() and database.event_log()"
    )


def _describe(database: SharedDatabase | None) -> str:
    return "no SQL database" if database is None else f"{type(database).__name__} {id(database):#x}"
