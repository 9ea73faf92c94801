"""The outbox outlet: a unit of work's messages become rows of its transaction.

Outside a unit of work, :meth:`OutboxOutlet.emit` passes envelopes straight to the
outlet inside. In one, :meth:`OutboxOutlet.stage` writes them as outbox rows of the
unit's transaction, and after the commit the relay hands the rows to
:meth:`OutboxOutlet.deliver`: rows for a transport destination (a queue or a topic)
are sent in batches per destination, keeping commit order within each; ``local`` rows
(a bus without a transport) are decoded and handled here, as messages arriving from a
queue are (each handler isolated, failures dead letters). A message that failed blocks
the later messages of its group in the same batch, as the relay's contract asks.

Scheduled envelopes (:mod:`messagebus._schedule`: the due-time header) become rows with
a due time. Those a handler held back outside any unit of work reach :meth:`emit`; they
are written in a transaction of their own there, never passed on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from messagebus._envelope import Envelope
from messagebus._errors import DecodeError, MessageTooLargeError, SendError, TransportError
from messagebus._messages import Message
from messagebus._outlets._departure import Departure, send_batch
from messagebus._outlets._protocol import Outlet
from messagebus._schedule import DUE_HEADER, due_of
from messagebus.outbox import DeliveryFailure, OutboxMessage
from messagebus.transports._protocol import Outgoing, Transport
from messagebus.transports._routing import Destination

if TYPE_CHECKING:
    from messagebus._unit_of_work import UnitOfWork
    from messagebus.extension import OutboxStore

__all__ = ["OutboxOutlet"]

_BLOCKED = "an earlier message failed"


class OutboxOutlet:
    """Stages a unit of work's messages in the outbox; delivers committed rows.

    Args:
        inner: where messages go outside units of work, and where the relay's rows go
            (the dispatcher here, or a :class:`TransportOutlet`).
        departure: hooks, destination and encoding of each row.
        transport: returns the running transport (raises
            :class:`~messagebus.BusStateError` on a bus without one, which a row for a
            queue or topic then fails with).
        handle: runs this service's handlers on a decoded ``local`` row.
        outbox: the store scheduled envelopes outside a unit of work are written to.
    """

    def __init__(
        self,
        inner: Outlet,
        departure: Departure,
        *,
        transport: Callable[[], Transport],
        handle: Callable[[Envelope[Message]], Awaitable[None]],
        outbox: OutboxStore | None = None,
    ) -> None:
        self._inner = inner
        self._departure = departure
        self._transport = transport
        self._handle = handle
        self._outbox = outbox

    async def emit(self, envelopes: Sequence[Envelope[Message]]) -> None:
        """Pass ``envelopes`` on, except scheduled ones: those are written to the outbox."""
        if self._outbox is not None and any(DUE_HEADER in e.headers for e in envelopes):
            scheduled = [e for e in envelopes if DUE_HEADER in e.headers]
            async with self._outbox.transaction() as transaction:
                transaction.add(self._rows(scheduled))
            envelopes = [e for e in envelopes if DUE_HEADER not in e.headers]
            if not envelopes:
                return
        await self._inner.emit(envelopes)

    async def stage(self, unit: UnitOfWork, envelopes: Sequence[Envelope[Message]]) -> None:
        """Write ``envelopes`` as outbox rows of ``unit``'s transaction."""
        unit.transaction.add(self._rows(envelopes))

    def _rows(self, envelopes: Sequence[Envelope[Message]]) -> list[OutboxMessage]:
        rows = []
        for envelope in envelopes:
            due = due_of(envelope)
            destination, outgoing = self._departure.depart(envelope)
            rows.append(
                OutboxMessage(
                    id=outgoing.message_id,
                    destination=destination,
                    body=outgoing.body,
                    group_key=outgoing.group_key,
                    deduplication_id=outgoing.deduplication_id,
                    created_at=envelope.timestamp.timestamp(),
                    due_at=due,
                )
            )
        return rows

    async def deliver(self, rows: Sequence[OutboxMessage]) -> list[DeliveryFailure]:
        """Deliver committed ``rows`` (in commit order); return the ones that failed."""
        failures: list[DeliveryFailure] = []
        failed_groups: set[str] = set()
        batches: dict[Destination, list[OutboxMessage]] = {}
        for row in rows:
            batches.setdefault(row.destination, []).append(row)
        for destination, batch in batches.items():
            blocked = [row for row in batch if row.group_key in failed_groups]
            failures.extend(DeliveryFailure(row.id, _BLOCKED) for row in blocked)
            batch = [row for row in batch if row.group_key not in failed_groups]  # noqa: PLW2901
            if destination.kind == "local":
                new = await self._handle_here(batch)
            else:
                new = await self._send(destination, batch)
            failures.extend(new)
            failed_ids = {failure.message_id for failure in new}
            failed_groups.update(
                row.group_key for row in batch if row.id in failed_ids and row.group_key is not None
            )
        return failures

    async def _handle_here(self, rows: Sequence[OutboxMessage]) -> list[DeliveryFailure]:
        failures: list[DeliveryFailure] = []
        blocked: set[str] = set()
        for row in rows:
            if row.group_key is not None and row.group_key in blocked:
                failures.append(DeliveryFailure(row.id, _BLOCKED))
                continue
            try:
                envelope = self._departure.codec.decode(row.body)
            except DecodeError as error:
                # Retrying cannot teach this process the type: park it, visible and replayable.
                failures.append(DeliveryFailure(row.id, f"DecodeError: {error}", retry=False))
            else:
                try:
                    await self._handle(envelope)
                except TransportError as error:
                    failures.append(DeliveryFailure(row.id, f"{type(error).__qualname__}: {error}"))
                else:
                    continue
            if row.group_key is not None:
                blocked.add(row.group_key)
        return failures

    async def _send(
        self, destination: Destination, rows: Sequence[OutboxMessage]
    ) -> list[DeliveryFailure]:
        if not rows:
            return []
        transport = self._transport()
        outgoing = [
            Outgoing(
                body=row.body,
                message_id=row.id,
                group_key=row.group_key,
                deduplication_id=row.deduplication_id,
            )
            for row in rows
        ]
        try:
            await send_batch(transport, destination, outgoing)
        except MessageTooLargeError as error:
            # Nothing of this call was sent: the large one is parked, the others go again.
            return [
                DeliveryFailure(row.id, str(error), retry=row.id != error.message_id)
                for row in rows
            ]
        except SendError as error:
            return [DeliveryFailure(message_id, reason) for message_id, reason in error.failed]
        except TransportError as error:
            reason = f"{type(error).__qualname__}: {error}"
            return [DeliveryFailure(row.id, reason) for row in rows]
        return []
