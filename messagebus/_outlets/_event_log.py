"""The event-log outlet: every event leaving the bus is appended first, then passed on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus._outlets._protocol import Outlet, StagingOutlet
from messagebus.eventlog._store import EventLog

if TYPE_CHECKING:
    from messagebus._unit_of_work import UnitOfWork
    from messagebus.eventlog import LogRecord

__all__ = ["EventLogOutlet", "StagingEventLogOutlet", "TransactionalLog"]


class TransactionalLog(EventLog, Protocol):
    """An event log that can also append on the caller's connection (the SQL logs)."""

    def append_in(
        self, connection: Any, envelopes: Sequence[Envelope[Message]]
    ) -> Sequence[LogRecord]:
        """Append ``envelopes`` in the caller's transaction (blocking: a worker thread)."""


class EventLogOutlet:
    """Appends the events among the envelopes to a log, then passes them all on.

    The envelopes passed on for events are the log's (they carry the stream sequence).

    Args:
        log: the event log.
        inner: where the envelopes go next.
    """

    def __init__(self, log: EventLog, inner: Outlet) -> None:
        self._log = log
        self._inner = inner

    async def emit(self, envelopes: Sequence[Envelope[Message]]) -> None:
        """Append the events, then emit every envelope through the inner outlet."""
        events = [envelope for envelope in envelopes if envelope.kind == "event"]
        if events:
            envelopes = _swap(envelopes, events, await self._log.append(events))
        await self._inner.emit(envelopes)


class StagingEventLogOutlet(EventLogOutlet):
    """An :class:`EventLogOutlet` in front of an outbox: units of work append in their transaction.

    :meth:`stage` appends the events on the unit's connection (the log is an SQL log on
    the outbox's database, which the bus makes sure of when it is made) and wakes the
    log's subscriptions after the commit.
    """

    def __init__(self, log: TransactionalLog, inner: StagingOutlet) -> None:
        super().__init__(log, inner)
        self._staged = log
        self._staging = inner

    async def stage(self, unit: UnitOfWork, envelopes: Sequence[Envelope[Message]]) -> None:
        """Append the events in ``unit``'s transaction, then stage every envelope inside."""
        events = [envelope for envelope in envelopes if envelope.kind == "event"]
        if events:
            append_in = self._staged.append_in
            records = await unit.run(lambda connection: append_in(connection, events))
            envelopes = _swap(envelopes, events, records)
            unit.after_commit(self._staged.notify_appended)
        await self._staging.stage(unit, envelopes)


def _swap(
    envelopes: Sequence[Envelope[Message]],
    events: list[Envelope[Message]],
    records: Sequence[LogRecord],
) -> list[Envelope[Message]]:
    logged = {id(event): record.envelope for event, record in zip(events, records, strict=True)}
    return [logged.get(id(envelope), envelope) for envelope in envelopes]
