"""How the bus's outbox relay delivers rows: to the transport, or to this process.

Rows written for a transport destination (a queue or a topic) are sent in batches per
destination, keeping commit order within each; rows written without a transport
(``local``) are decoded and handled here, as messages arriving from a queue are
(:meth:`MessageBus.handle_delivered`: each handler isolated, failures dead letters).
A message that failed blocks the later messages of its group in the same batch, as
the relay's contract asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from messagebus._errors import (
    DecodeError,
    MessageTooLargeError,
    SendError,
    TransportError,
)
from messagebus.outbox import DeliveryFailure, Destination, OutboxMessage
from messagebus.transports._protocol import Outgoing

if TYPE_CHECKING:
    from messagebus._bus import MessageBus

__all__ = ["deliver_rows"]


async def deliver_rows(bus: MessageBus, rows: Sequence[OutboxMessage]) -> list[DeliveryFailure]:
    """Deliver ``rows`` (in commit order); return the ones that failed."""
    failures: list[DeliveryFailure] = []
    failed_groups: set[str] = set()
    batches: dict[Destination, list[OutboxMessage]] = {}
    for row in rows:
        batches.setdefault(row.destination, []).append(row)
    for destination, batch in batches.items():
        blocked = [row for row in batch if row.group_key in failed_groups]
        failures.extend(DeliveryFailure(row.id, "an earlier message failed") for row in blocked)
        batch = [row for row in batch if row.group_key not in failed_groups]  # noqa: PLW2901
        if destination.kind == "local":
            new = await _handle_here(bus, batch)
        else:
            new = await _send(bus, destination, batch)
        failures.extend(new)
        failed_ids = {failure.message_id for failure in new}
        failed_groups.update(
            row.group_key for row in batch if row.id in failed_ids and row.group_key is not None
        )
    return failures


async def _handle_here(bus: MessageBus, rows: Sequence[OutboxMessage]) -> list[DeliveryFailure]:
    failures: list[DeliveryFailure] = []
    blocked: set[str] = set()
    for row in rows:
        if row.group_key is not None and row.group_key in blocked:
            failures.append(DeliveryFailure(row.id, "an earlier message failed"))
            continue
        try:
            envelope = bus.codec.decode(row.body)
        except DecodeError as error:
            # Retrying cannot teach this process the type: park it, visible and replayable.
            failures.append(DeliveryFailure(row.id, f"DecodeError: {error}", retry=False))
        else:
            try:
                await bus.handle_delivered(envelope)
            except TransportError as error:
                failures.append(DeliveryFailure(row.id, f"{type(error).__qualname__}: {error}"))
            else:
                continue
        if row.group_key is not None:
            blocked.add(row.group_key)
    return failures


async def _send(
    bus: MessageBus, destination: Destination, rows: Sequence[OutboxMessage]
) -> list[DeliveryFailure]:
    if not rows:
        return []
    transport = bus._running_transport()
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
        if destination.kind == "queue":
            await transport.send(destination.name, outgoing)
        else:
            await transport.publish(destination.name, outgoing)
    except MessageTooLargeError as error:
        # Nothing of this call was sent: the large one is parked, the others go again.
        return [
            DeliveryFailure(row.id, str(error), retry=row.id != error.message_id) for row in rows
        ]
    except SendError as error:
        return [DeliveryFailure(message_id, reason) for message_id, reason in error.failed]
    except TransportError as error:
        reason = f"{type(error).__qualname__}: {error}"
        return [DeliveryFailure(row.id, reason) for row in rows]
    return []
