"""The unit of work: one database transaction for the caller's writes and its messages.

``async with bus.unit_of_work() as uow:`` opens a transaction on the bus's outbox
database. The caller's own SQL joins it through ``uow`` (:meth:`UnitOfWork.execute`,
:meth:`UnitOfWork.fetch`, or :meth:`UnitOfWork.run` with the driver's connection), and
messages given to :meth:`UnitOfWork.publish` / :meth:`UnitOfWork.send` become outbox
rows of the same transaction. Leaving the block commits all of it; an exception rolls
all of it back, and so does a message that cannot be encoded (an
:class:`~messagebus.EncodeError` raised as the block ends: messages are staged then,
through the bus's outlets, after the event log, if the bus has one, has given events
their stream sequence in the same transaction). Only after the commit does the bus's
relay deliver the messages (at once, in this process; a crash in between leaves them
for the relay's next poll).

A handler runs inside a unit of work when :class:`~messagebus.middleware.UnitOfWorkMiddleware`
wraps it: then its ``ctx.publish`` / ``ctx.send`` follow-ups are written to the outbox in
its transaction instead of being dispatched, and ``ctx.unit_of_work`` (or
:func:`current_unit_of_work`) gives it the transaction for its own writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from messagebus._dispatch._run import current_envelope
from messagebus._envelope import Envelope
from messagebus._follow_ups import Checks, FollowUps
from messagebus._messages import Message

if TYPE_CHECKING:
    from messagebus._outlets import StagingOutlet
    from messagebus.extension import OutboxStore, OutboxTransaction

__all__ = ["UnitOfWork", "current_unit_of_work", "open_unit_of_work"]

_T = TypeVar("_T")

_current: ContextVar[UnitOfWork | None] = ContextVar("messagebus.unit_of_work", default=None)


def current_unit_of_work() -> UnitOfWork | None:
    """Return the unit of work open in this task (and the tasks it started), or None."""
    return _current.get()


class UnitOfWork(FollowUps):
    """One open transaction of the bus's outbox; see the module.

    Attributes:
        transaction: the outbox store's transaction, for what this class does not wrap.
        store: the outbox store the transaction is on.
    """

    def __init__(
        self,
        checks: Checks,
        transaction: OutboxTransaction[Any],
        outlet: StagingOutlet,
        store: OutboxStore | None = None,
    ) -> None:
        self._checks = checks
        self._outlet = outlet
        self.transaction = transaction
        self.store = store
        self._held: list[Envelope[Message]] = []
        self._after_commit: list[Callable[[], None]] = []

    async def execute(self, statement: str, params: Sequence[object] = ()) -> int:
        """Run one statement in the transaction; return the rows it changed.

        Placeholders are the driver's: ``?`` for SQLite, ``%s`` for PostgreSQL.
        """
        return await self.transaction.execute(statement, params)

    async def fetch(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one query in the transaction; return its rows as tuples."""
        return await self.transaction.fetch(statement, params)

    async def run(self, call: Callable[[Any], _T]) -> _T:
        """Return ``call(connection)``, run in a worker thread on the transaction's connection.

        ``connection`` is the driver's own (:class:`sqlite3.Connection`,
        :class:`psycopg.Connection`); ``call`` must not commit, roll back or close it.
        """
        return await self.transaction.run(call)

    def add(self, envelopes: Sequence[Envelope[Message]]) -> None:
        """Write envelopes made elsewhere (held-back follow-ups) to the outbox, in order."""
        self._held.extend(envelopes)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the transaction has committed (not if it rolls back)."""
        self._after_commit.append(callback)

    def _hold(
        self,
        message: Message,
        idempotency_key: str | None,
        group_key: str | None,
        headers: Mapping[str, str] | None,
    ) -> Envelope[Message]:
        envelope: Envelope[Message] = Envelope(
            message,
            parent=current_envelope(),
            idempotency_key=idempotency_key,
            group_key=group_key,
            headers=headers,
        )
        self._held.append(envelope)
        return envelope


@asynccontextmanager
async def open_unit_of_work(
    store: OutboxStore, checks: Checks, outlet: StagingOutlet
) -> AsyncIterator[UnitOfWork]:
    """Run a unit of work on ``store``: stage its messages through ``outlet``, then commit."""
    async with store.transaction() as transaction:
        unit = UnitOfWork(checks, transaction, outlet, store)
        token = _current.set(unit)
        try:
            yield unit
            held, unit._held = unit._held, []
            if held:
                await outlet.stage(unit, held)
        finally:
            _current.reset(token)
    for callback in unit._after_commit:
        callback()
