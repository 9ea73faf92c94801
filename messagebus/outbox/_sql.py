"""What the SQL outboxes share: the transaction base class, commit listeners, row mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio

from messagebus._errors import DatabaseMismatchError
from messagebus._log import get_logger
from messagebus._sql._database import SharedDatabase
from messagebus._sql._transaction import HeldTransaction
from messagebus.outbox._message import OutboxEntry, OutboxMessage
from messagebus.outbox._store import CommitListener
from messagebus.transports._routing import Destination

__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CommitListeners",
    "SQLTransaction",
    "check_own",
    "entry",
    "open_transaction",
    "row",
]

SCHEMA_VERSION = 2
"""The layout of the outbox table this code writes; recorded in ``messagebus_schema``.

Version 2 added ``due_at`` (scheduled messages); :data:`MIGRATIONS` takes a version 1
table there in place.
"""

MIGRATIONS = {1: ("ALTER TABLE {t} ADD COLUMN due_at double precision",)}
"""Version ``n`` -> ``n + 1`` statements, ``{t}`` the table (one text for both SQL dialects:
SQLite reads ``double precision`` as REAL)."""

COLUMNS = (
    "id, destination_kind, destination_name, body, group_key, deduplication_id, "
    "created_at, due_at, status, attempts, last_error"
)
"""The columns :func:`entry` reads, in its order."""

_C = TypeVar("_C")
_D = TypeVar("_D", bound=SharedDatabase)
_T = TypeVar("_T")
_U = TypeVar("_U", bound="SQLTransaction[Any, Any]")


def row(message: OutboxMessage) -> tuple[object, ...]:
    """Return the insert parameters of ``message``: id, destination, body, keys, times.

    The last two are ``due_at`` and ``available_at``: a scheduled row is not claimable
    before its due time, so claims (of any messagebus version) respect it unchanged.
    """
    m = message
    destination = m.destination
    due = m.due_at
    return (m.id, destination.kind, destination.name, m.body, m.group_key,
            m.deduplication_id, m.created_at, due, 0.0 if due is None else due)  # fmt: skip


def entry(values: Sequence[Any]) -> OutboxEntry:
    """Return the entry of a row read as :data:`COLUMNS`."""
    message = OutboxMessage(
        id=values[0],
        destination=Destination(values[1], values[2]),
        body=bytes(values[3]),
        group_key=values[4],
        deduplication_id=values[5],
        created_at=values[6],
        due_at=values[7],
    )
    return OutboxEntry(message, values[8], values[9], values[10])


def check_own(database: SharedDatabase, transaction: SQLTransaction[Any, Any]) -> None:
    """Raise :class:`~messagebus.DatabaseMismatchError` unless ``transaction`` is on it."""
    if transaction.database is not database:
        raise DatabaseMismatchError(
            "a unit of work of another database object: the store can join only its own "
            "database's transactions"
        )


class CommitListeners:
    """The listeners of one store, told the ids of each commit that carried messages."""

    def __init__(self) -> None:
        self._listeners: list[CommitListener] = []

    def add(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def notify(self, messages: Sequence[OutboxMessage]) -> None:
        if not messages:
            return
        ids = tuple(message.id for message in messages)
        for listener in self._listeners:
            try:
                listener(ids)
            except Exception:  # noqa: BLE001  # committed already: the relay's poll recovers
                get_logger("messagebus").exception(
                    "outbox.listener_failed", listener=repr(listener), messages=len(ids)
                )


class SQLTransaction(Generic[_C, _D]):
    """One open outbox transaction on a held connection; see :class:`OutboxTransaction`.

    Subclasses give :meth:`execute` and :meth:`fetch` for their driver.
    """

    def __init__(self, held: HeldTransaction[_C], database: _D) -> None:
        self._held = held
        self._on = database
        self._messages: list[OutboxMessage] = []
        self._open = True

    @property
    def database(self) -> _D:
        """The database object the transaction is on: the outbox's.

        A store joins this transaction (inbox mode, the event log) only if it is on
        the same object (``is``), made from the same
        :class:`~messagebus.sqlite.SQLiteDatabase` /
        :class:`~messagebus.postgres.PostgresDatabase`.
        """
        return self._on

    @property
    def messages(self) -> Sequence[OutboxMessage]:
        """The messages added so far, in order."""
        return tuple(self._messages)

    def add(self, messages: OutboxMessage | Iterable[OutboxMessage]) -> None:
        """Add messages, to be written in this transaction, in this order.

        They are inserted just before the commit (one batch), so a duplicate id fails the
        commit and rolls the whole unit of work back. Raises
        :class:`anyio.ClosedResourceError` once the unit of work has ended.
        """
        if not self._open:
            raise anyio.ClosedResourceError
        if isinstance(messages, OutboxMessage):
            self._messages.append(messages)
        else:
            self._messages.extend(messages)

    async def run(self, call: Callable[[_C], _T]) -> _T:
        """Return ``call(connection)``, run in a worker thread on the transaction's connection.

        ``call`` must not commit, roll back or close the connection.
        """
        return await self._held.run(call)

    async def finish(self, insert: Callable[[_C, Sequence[OutboxMessage]], None]) -> None:
        """Refuse more messages, then ``insert`` those added, if any (before the commit)."""
        self._open = False
        if self._messages:
            messages = self.messages
            await self._held.run(lambda connection: insert(connection, messages))

    def close(self) -> None:
        """Refuse more messages (the unit of work was rolled back)."""
        self._open = False


@asynccontextmanager
async def open_transaction(
    transaction: AbstractAsyncContextManager[HeldTransaction[_C]],
    make: Callable[[HeldTransaction[_C]], _U],
    insert: Callable[[_C, Sequence[OutboxMessage]], None],
    listeners: CommitListeners,
) -> AsyncIterator[_U]:
    """Run one outbox transaction: yield it, insert its messages before the commit, notify.

    An exception in the block rolls everything back and notifies nobody; the listeners
    hear of the messages only once the commit has succeeded.
    """
    async with transaction as held:
        unit = make(held)
        try:
            yield unit
        except BaseException:
            unit.close()
            raise
        await unit.finish(insert)
    listeners.notify(unit.messages)
