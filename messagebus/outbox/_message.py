"""The outbox's records: a message waiting to leave, where it goes, and how it fared."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import attrs

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus.transports._routing import Destination

__all__ = [
    "DeliveryFailure",
    "OutboxEntry",
    "OutboxMessage",
    "OutboxStatus",
    "Status",
]

Status = Literal["pending", "sent", "dead"]
"""A row's state: waiting (or being delivered under a lease), delivered, or parked."""


@attrs.frozen
class OutboxMessage:
    """One outgoing message, as written in the outbox table.

    Attributes:
        id: the envelope's ``message_id``; unique in the table (a second row with one id
            is refused by the database's unique constraint).
        destination: where the relay delivers it.
        body: the encoded envelope (CloudEvents JSON from :class:`~messagebus.WireCodec`).
        group_key: the ordering key: rows with one key are delivered in the order they
            were committed (see :class:`~messagebus.extension.OutboxStore`).
        deduplication_id: passed on to the transport (SQS FIFO deduplication); None
            lets the transport use ``id``.
        created_at: when the message was made, seconds since the Unix epoch.
        due_at: a scheduled message's due time (seconds since the Unix epoch, on the
            store's clock): not delivered before it, and delivered as soon as the relay
            can after it (a time in the past is due now). None: deliver at once. A
            scheduled row takes its place in its group's order when it is due: it does
            not hold back later rows of its group meanwhile.
    """

    id: str
    destination: Destination
    body: bytes
    group_key: str | None = None
    deduplication_id: str | None = None
    created_at: float = attrs.field(factory=time.time)
    due_at: float | None = None

    @classmethod
    def from_envelope(
        cls,
        envelope: Envelope[Message],
        destination: Destination,
        codec: WireCodec,
        *,
        deduplication_id: str | None = None,
    ) -> OutboxMessage:
        """Encode ``envelope`` for ``destination``: its id, body and group key.

        Raises:
            EncodeError: the message has a field the codec cannot express in JSON.
        """
        return cls(
            id=envelope.message_id,
            destination=destination,
            body=codec.encode(envelope),
            group_key=envelope.group_key,
            deduplication_id=deduplication_id,
            created_at=envelope.timestamp.timestamp(),
        )


@attrs.frozen
class OutboxEntry:
    """A stored message with its relay state, as :meth:`OutboxStore.claim` and ``list`` see it.

    Attributes:
        message: the message itself.
        status: pending (possibly leased to a relay), sent, or dead (parked).
        attempts: failed deliveries so far.
        last_error: why the last delivery failed, if one did.
    """

    message: OutboxMessage
    status: Status
    attempts: int
    last_error: str | None = None


@attrs.frozen
class DeliveryFailure:
    """A message the relay's ``deliver`` could not deliver.

    Attributes:
        message_id: the failed message's ``id``.
        reason: why (recorded as the row's ``last_error``).
        retry: False to park the message as dead at once (a failure retrying cannot
            fix, such as a message too large for the transport).
    """

    message_id: str
    reason: str
    retry: bool = True


@attrs.frozen
class OutboxStatus:
    """Counts over the outbox table, for monitoring.

    Attributes:
        pending: waiting for delivery, not leased (including those backing off).
        in_flight: pending and leased to a relay right now.
        dead: parked after too many failures (see ``requeue``).
        sent: delivered and kept until the retention period ends.
        oldest_pending_age: seconds since the oldest pending or in-flight message was
            made, or for a scheduled one since it fell due (by the store's clock), None
            if there is none; scheduled messages not due yet do not count.
        scheduled: scheduled messages not due yet (not counted in ``pending``).
    """

    pending: int
    in_flight: int
    dead: int
    sent: int
    oldest_pending_age: float | None
    scheduled: int = 0


def failures_by_id(failures: Sequence[DeliveryFailure]) -> dict[str, DeliveryFailure]:
    """Index ``failures`` by message id (the first failure of an id wins)."""
    indexed: dict[str, DeliveryFailure] = {}
    for failure in failures:
        indexed.setdefault(failure.message_id, failure)
    return indexed
