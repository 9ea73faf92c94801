"""The transport contract: move encoded messages between services, at least once.

A transport knows nothing of message types: it moves bodies (CloudEvents JSON bytes,
made by the bus's :class:`~messagebus.WireCodec`) between named *queues* and *topics*.
A queue is a point-to-point inbox (one service consumes it); a topic fans a message out
to every queue subscribed to it. Commands go to their owner's queue, events to a topic.

Delivery semantics every implementation must keep (the conformance suite in
:mod:`messagebus.testing` checks them):

- At least once. A received message stays invisible to other receivers for its
  visibility timeout; :meth:`Delivery.ack` removes it for good, :meth:`Delivery.nack`
  makes it visible again after a delay, and a message neither acked nor nacked in time
  reappears by itself. Each receive adds one to its ``receive_count``; past the queue's
  ``max_receives`` it moves to the queue's dead-letter queue instead.
- No ordering, except per ``group_key`` on a FIFO queue where
  :attr:`Capabilities.ordered_groups` says so: there, messages of one group are
  delivered in send order, one group's next message only after the previous one is
  acked (or dead-lettered).
- A message larger than :attr:`Capabilities.max_message_bytes` is refused before
  anything is sent (:class:`~messagebus.MessageTooLargeError`): never dropped silently.
- Every method is safe to call from many tasks at once.

Errors are the library's own (:class:`~messagebus.TransportError` and below); vendor
exceptions are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs

__all__ = [
    "Capabilities",
    "Delivery",
    "NamedTransport",
    "Outgoing",
    "QueueSpec",
    "TopicSpec",
    "TopicSubscription",
    "Topology",
    "Transport",
]


@attrs.frozen
class Capabilities:
    """What a transport can do, as data: core code reads this, never concrete types.

    Attributes:
        ordered_groups: FIFO queues deliver each ``group_key`` in send order.
        fan_out: topics deliver one published message to every subscribed queue.
        max_message_bytes: the largest body accepted (SQS: 1 MiB).
        max_batch_size: the most messages one underlying call carries (SQS: 10).
        max_batch_bytes: the most bytes one underlying call carries (SQS: 1 MiB).
        max_delay: the longest delay :meth:`Transport.send` accepts, in seconds
            (SQS standard queues: 900; FIFO queues accept none, see ``fifo_delay``).
        max_visibility: the longest visibility timeout, in seconds (SQS: 12 h).
        fifo_delay: FIFO queues accept a per-message delay.
        system: the ``messaging.system`` of its queues, as OpenTelemetry's messaging
            conventions name it (``"aws_sqs"``); tracing reads it.
        topic_system: the ``messaging.system`` of its topics (``"aws_sns"``), when
            publishing goes through another service than the queues; None: ``system``.
        routes_by_type: topics route by the messages' wire types, not by name
            (EventBridge): a published message reaches every queue subscribed to a
            topic whose :attr:`TopicSpec.message_types` hold its type, whichever topic
            it was published to; a topic is no resource, so publishing to one never
            provisioned is no error.
    """

    ordered_groups: bool
    fan_out: bool
    max_message_bytes: int
    max_batch_size: int
    max_batch_bytes: int
    max_delay: float
    max_visibility: float
    fifo_delay: bool
    system: str = "messagebus"
    topic_system: str | None = None
    routes_by_type: bool = False


@attrs.frozen
class QueueSpec:
    """A queue to provision.

    Attributes:
        name: the logical name (letters, digits, ``-`` and ``_``); a transport may add
            a prefix and a suffix (SQS FIFO queues end in ``.fifo``).
        fifo: deliver each ``group_key`` in order, and deduplicate by
            ``deduplication_id`` (SQS: within five minutes).
        visibility_timeout: seconds a received message stays invisible by default.
        max_receives: receives after which a message moves to the dead-letter queue
            (named by :attr:`dead_letter_queue`); None keeps it forever.
    """

    name: str
    fifo: bool = False
    visibility_timeout: float = 30.0
    max_receives: int | None = 5

    @property
    def dead_letter_queue(self) -> str:
        """The logical name of this queue's dead-letter queue: ``"<name>-dlq"``."""
        return f"{self.name}-dlq"


@attrs.frozen
class TopicSpec:
    """A topic to provision; ``fifo`` topics keep order per group into FIFO queues.

    ``message_types`` are the wire types published to it, when known (the router fills
    them in): a transport routing by type rather than by topic (EventBridge rules match
    ``detail-type``) needs them. They take no part in comparing specs.
    """

    name: str
    fifo: bool = False
    message_types: tuple[str, ...] = attrs.field(default=(), eq=False)


@attrs.frozen
class TopicSubscription:
    """``queue`` gets a copy of every message published to ``topic``: a topology record.

    Not to be confused with :class:`messagebus.eventlog.Subscription`, a reader of the
    event log.
    """

    topic: str
    queue: str


@attrs.frozen
class Topology:
    """Queues, topics and subscriptions, as data: what :meth:`Transport.provision` makes."""

    queues: tuple[QueueSpec, ...] = ()
    topics: tuple[TopicSpec, ...] = ()
    subscriptions: tuple[TopicSubscription, ...] = ()


@attrs.frozen
class Outgoing:
    """One message to send: its encoded body and what the transport needs besides.

    Attributes:
        body: the encoded envelope (CloudEvents JSON, UTF-8).
        message_id: the envelope's id (unique per message; used to report failures).
        group_key: the FIFO group (SQS MessageGroupId); ignored by standard queues.
            Required by FIFO queues: None there means the group ``"default"``.
        deduplication_id: the FIFO deduplication id (SQS MessageDeduplicationId);
            None means ``message_id``.
        delay: seconds before the message becomes visible (0 to ``max_delay``).
    """

    body: bytes
    message_id: str
    group_key: str | None = None
    deduplication_id: str | None = None
    delay: float = 0.0


@runtime_checkable
class Delivery(Protocol):
    """One received message, invisible to other receivers until settled or timed out.

    Settle it exactly once with :meth:`ack` or :meth:`nack`; :meth:`extend` may be
    called any number of times before that. After the visibility timeout has passed the
    message may already be with another receiver: then settling raises
    :class:`~messagebus.DeliveryExpiredError` where the transport can tell.
    """

    @property
    def body(self) -> bytes:
        """The encoded envelope, exactly as sent."""

    @property
    def queue(self) -> str:
        """The logical name of the queue it came from."""

    @property
    def receive_count(self) -> int:
        """How many times this message has been received, this time included (>= 1)."""

    async def ack(self) -> None:
        """Remove the message from the queue for good."""

    async def nack(self, delay: float = 0.0) -> None:
        """Make the message visible again after ``delay`` seconds (0 = now)."""

    async def extend(self, visibility: float) -> None:
        """Keep the message invisible for ``visibility`` more seconds from now."""


@runtime_checkable
class Transport(Protocol):
    """Moves encoded messages to queues and topics and receives them; see the module.

    A transport is an async context manager: entering opens connections, leaving
    closes them (deliveries not settled by then reappear after their timeout).
    """

    @property
    def capabilities(self) -> Capabilities:
        """What this transport can do."""

    async def provision(self, topology: Topology) -> None:
        """Create the queues, topics and subscriptions that do not exist yet.

        Idempotent. For development and tests; production provisions with its own
        infrastructure tools (the transport's docs list what it needs).
        """

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Put ``messages`` on ``queue``, in as few calls as the limits allow.

        Returns once every message is stored by the transport. On a FIFO queue,
        messages of one group keep the order given.

        Raises:
            DestinationNotFoundError: no such queue.
            MessageTooLargeError: a body is over ``max_message_bytes``; nothing sent.
            SendError: some messages could not be sent (it lists them); the others were.
            TransportUnavailableError: the transport could not be reached.
        """

    async def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Publish ``messages`` to ``topic``: every subscribed queue gets each one.

        Raises the same errors as :meth:`send`, for a topic.
        """

    async def receive(
        self,
        queue: str,
        *,
        max_messages: int = 10,
        wait: float = 20.0,
        visibility_timeout: float | None = None,
    ) -> Sequence[Delivery]:
        """Return up to ``max_messages`` messages from ``queue``, waiting up to ``wait`` s.

        Returns as soon as at least one message is there (possibly fewer than asked),
        or an empty sequence once ``wait`` has passed. ``visibility_timeout`` overrides
        the queue's default for these deliveries. Cancelling a waiting receive loses no
        message.

        Raises:
            DestinationNotFoundError: no such queue.
            TransportUnavailableError: the transport could not be reached.
        """

    async def __aenter__(self) -> Transport: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


@runtime_checkable
class NamedTransport(Protocol):
    """A transport whose broker knows queues and topics by names of their own.

    Optional beside :class:`Transport`: documents that describe a service (its AsyncAPI
    document) and telemetry (``messaging.destination.name``) show the broker's names
    where the transport says what they are, and the logical names otherwise.
    """

    def address(self, name: str, *, fifo: bool | None = None, topic: bool = False) -> str:
        """Return the broker's name of queue (or, ``topic=True``, topic) ``name``.

        ``fifo`` True or False names the FIFO or the standard one (SQS: prefix, then
        ``.fifo`` or not); None names the one this transport uses: as an earlier call
        resolved it, else the standard one. Never does I/O.
        """
        ...
