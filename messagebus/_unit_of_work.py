"""The unit of work: one database transaction for the caller's writes and its messages.

``async with bus.unit_of_work() as uow:`` opens a transaction on the bus's outbox
database. The caller's own SQL joins it through ``uow`` (:meth:`UnitOfWork.execute`,
:meth:`UnitOfWork.fetch`, or :meth:`UnitOfWork.run` with the driver's connection), and
messages given to :meth:`UnitOfWork.publish` / :meth:`UnitOfWork.send` become outbox
rows of the same transaction. Leaving the block commits all of it; an exception rolls
all of it back, and so does a message that cannot be encoded (an
:class:`~messagebus.EncodeError` raised as the block ends: messages are encoded then,
after the event log, if the bus has one, has given events their stream sequence in the
same transaction). Only after the commit does the bus's relay deliver the messages (at
once, in this process; a crash in between leaves them for the relay's next poll).

A handler runs inside a unit of work when :class:`~messagebus.middleware.UnitOfWorkMiddleware`
wraps it: then its ``ctx.publish`` / ``ctx.send`` follow-ups are written to the outbox in
its transaction instead of being dispatched, and ``ctx.unit_of_work`` (or
:func:`current_unit_of_work`) gives it the transaction for its own writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from messagebus._context import FollowUps, current_frame, envelope_of
from messagebus._envelope import Envelope
from messagebus._messages import Message

if TYPE_CHECKING:
    from messagebus._bus import MessageBus
    from messagebus.outbox import OutboxTransaction

__all__ = ["UnitOfWork", "current_unit_of_work"]

_T = TypeVar("_T")

_current: ContextVar[UnitOfWork | None] = ContextVar("messagebus.unit_of_work", default=None)


def current_unit_of_work() -> UnitOfWork | None:
    """Return the unit of work open in this task (and the tasks it started), or None."""
    return _current.get()


class UnitOfWork(FollowUps):
    """One open transaction of the bus's outbox; see the module.

    Attributes:
        transaction: the outbox store's transaction, for what this class does not wrap.
    """

    def __init__(self, bus: MessageBus, transaction: OutboxTransaction[Any]) -> None:
        self._bus = bus
        self.transaction = transaction
        self._pending: list[Envelope[Message]] = []
        self.logged = False

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
        self._pending.extend(envelopes)

    async def _write(self) -> None:
        """Write the messages given so far: the log's rows first, then the outbox's.

        Runs in the transaction, just before the commit. Events are appended to the
        bus's event log (if it has one) on the transaction's connection, so the outbox
        carries them with their stream sequence.
        """
        pending, self._pending = self._pending, []
        bus = self._bus
        log = bus.event_log
        if log is not None:
            events = [envelope for envelope in pending if envelope.kind == "event"]
            if events:
                # An SQL log on the outbox's database (checked when the bus was made).
                append_in = log.append_in  # type: ignore[attr-defined]
                records = await self.transaction.run(lambda c: append_in(c, events))
                logged = {
                    id(event): record.envelope
                    for event, record in zip(events, records, strict=True)
                }
                pending = [logged.get(id(envelope), envelope) for envelope in pending]
                self.logged = True
        self.transaction.add([bus._outbox_row(envelope) for envelope in pending])

    def _hold(
        self,
        message: Message,
        idempotency_key: str | None,
        group_key: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        frame = current_frame.get()
        self._pending.append(
            Envelope(
                message,
                parent=None if frame is None else envelope_of(frame),
                idempotency_key=idempotency_key,
                group_key=group_key,
                headers=headers,
            )
        )


def enter(unit: UnitOfWork) -> object:
    """Make ``unit`` the current unit of work; return the token for :func:`leave`."""
    return _current.set(unit)


def leave(token: object) -> None:
    """Restore the unit of work that was current before :func:`enter`."""
    _current.reset(token)  # type: ignore[arg-type]
