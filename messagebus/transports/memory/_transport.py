"""The in-memory transport: SQS semantics in one process, the default and the test double.

Queues and topics live in a :class:`MemoryBroker`; an :class:`InMemoryTransport` is one
connection to it. Each transport makes its own broker unless given one, and transports
given the same broker see the same queues: that is how two services, or a service
restarted (close one transport, open another on the broker), are modelled in one
process. Messages survive a transport but not the broker, nor the process.

What it shares with SQS, so that code tested on it behaves the same there:

- queues and topics exist only once provisioned (else
  :class:`~messagebus.DestinationNotFoundError`); a topic copies each message to every
  queue subscribed to it;
- visibility timeouts (the queue's, or the receive's override), redelivery on nack or
  timeout, ``receive_count``, and a move to ``<queue>-dlq`` on the receive after
  ``max_receives`` (the copy there starts again at ``receive_count`` 1, and the
  dead-letter queue keeps it until received and acked);
- FIFO queues: one message of a group in flight at a time, in send order, and sends
  deduplicated by ``deduplication_id`` (or ``message_id``) for five minutes;
- the limits of :data:`MEMORY_CAPABILITIES` (SQS's), including no per-message delay on
  FIFO queues (:class:`~messagebus.InvalidArgumentError`, a ValueError).

Stricter than SQS: settling or extending a delivery whose visibility has ended raises
:class:`~messagebus.DeliveryExpiredError` even when nobody has received it again.

Time: visibility and delays follow ``clock`` (monotonic seconds, ``anyio.current_time``
by default). Nothing runs in the background: a message's state is worked out from the
clock whenever it is looked at, and a waiting receive sleeps until the next message is
due or a send wakes it. A bare reading (``Callable[[], float]``) moves messages only, and
the waits (the long poll's ``wait``, a receive sleeping until the next message is due)
are measured by anyio; a :class:`~messagebus.extension.Clock` (a test's
:class:`~messagebus.testing.FakeClock`) measures the waits too, so advancing it wakes a
receiver when a delayed message becomes due.

Task-safety: within one event loop every operation is atomic (none awaits while it
changes a queue). A broker belongs to one event loop at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager

import anyio
import anyio.lowlevel

from messagebus._clock import Clock, TimeSource, monotonic_time
from messagebus._errors import (
    ConfigurationError,
    DestinationNotFoundError,
    InvalidArgumentError,
    MessageTooLargeError,
    TransportUnavailableError,
)
from messagebus.transports._protocol import (
    Capabilities,
    Outgoing,
    QueueSpec,
    TopicSpec,
    Topology,
)
from messagebus.transports.memory._queue import QueueDepth, QueueState, StoredMessage

__all__ = ["MEMORY_CAPABILITIES", "InMemoryTransport", "MemoryBroker"]

MEMORY_CAPABILITIES = Capabilities(
    ordered_groups=True,
    fan_out=True,
    max_message_bytes=1024 * 1024,
    max_batch_size=10,
    max_batch_bytes=1024 * 1024,
    max_delay=900.0,
    max_visibility=43_200.0,
    fifo_delay=False,
    system="messagebus_memory",
)
"""The in-memory transport's capabilities: SQS's limits, so that code tested here fits."""

_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


class MemoryBroker:
    """The queues, topics and subscriptions that in-memory transports share.

    Args:
        clock: monotonic seconds (``anyio.current_time`` by default), or a
            :class:`~messagebus.extension.Clock` that also measures the waits.

    Attributes:
        clock: the broker's monotonic reading.
    """

    def __init__(self, *, clock: TimeSource = anyio.current_time) -> None:
        self.clock = monotonic_time(clock)
        self._timer = clock if isinstance(clock, Clock) else None
        self._queues: dict[str, QueueState] = {}
        self._topics: dict[str, TopicSpec] = {}
        self._subscribers: dict[str, list[str]] = {}

    def provision(self, topology: Topology) -> None:
        """Create what ``topology`` names and does not exist yet; see the transport."""
        queues = {spec.name: spec for spec in topology.queues}
        topics = {spec.name: spec for spec in topology.topics}
        for name in [*queues, *topics]:
            if _NAME.fullmatch(name) is None:
                raise InvalidArgumentError(
                    f"{name!r} is not a valid name: use 1 to 80 letters, digits, '-' or '_'"
                )
        for spec in topology.queues:
            self._check_unchanged(self._queues.get(spec.name), spec)
        for topic in topology.topics:
            existing = self._topics.get(topic.name)
            if existing is not None and existing != topic:
                raise ConfigurationError(f"topic {topic.name!r} exists as {existing!r}")
        for subscription in topology.subscriptions:
            if subscription.topic not in topics and subscription.topic not in self._topics:
                raise DestinationNotFoundError(f"no topic {subscription.topic!r} to subscribe to")
            if subscription.queue not in queues and subscription.queue not in self._queues:
                raise DestinationNotFoundError(f"no queue {subscription.queue!r} to subscribe")
        # Checked everything first: a topology that is refused changes nothing.
        for spec in topology.queues:
            if spec.name not in self._queues:
                dead_letters = None
                if spec.max_receives is not None:
                    dead_letters = self._queues.get(spec.dead_letter_queue)
                    if dead_letters is None:
                        dead_letters = QueueState(_dead_letter_spec(spec), None)
                        self._queues[spec.dead_letter_queue] = dead_letters
                self._queues[spec.name] = QueueState(spec, dead_letters)
        self._topics.update(topics)
        for subscription in topology.subscriptions:
            subscribers = self._subscribers.setdefault(subscription.topic, [])
            if subscription.queue not in subscribers:
                subscribers.append(subscription.queue)

    def move_on_after(self, seconds: float) -> AbstractContextManager[anyio.CancelScope, bool]:
        """Return a cancel scope cancelled after ``seconds`` by the broker's clock."""
        if self._timer is None:
            return anyio.move_on_after(seconds)
        return self._timer.move_on_after(seconds)

    def queue(self, name: str) -> QueueState:
        """Return the queue named ``name``."""
        try:
            return self._queues[name]
        except KeyError:
            raise DestinationNotFoundError(f"no queue {name!r}: provision it first") from None

    def subscribers(self, topic: str) -> list[QueueState]:
        """Return the queues subscribed to ``topic``."""
        if topic not in self._topics:
            raise DestinationNotFoundError(f"no topic {topic!r}: provision it first")
        return [self._queues[name] for name in self._subscribers.get(topic, ())]

    def _check_unchanged(self, state: QueueState | None, spec: QueueSpec) -> None:
        if state is not None and state.spec != spec:
            raise ConfigurationError(
                f"queue {spec.name!r} exists as {state.spec!r}; cannot change it to {spec!r}"
            )


def _dead_letter_spec(spec: QueueSpec) -> QueueSpec:
    return QueueSpec(
        spec.dead_letter_queue,
        fifo=spec.fifo,
        visibility_timeout=spec.visibility_timeout,
        max_receives=None,
    )


class MemoryDelivery:
    """One message received from an in-memory queue; see :class:`Delivery`."""

    __slots__ = ("_message", "_queue", "_receipt", "_transport", "receive_count")

    def __init__(
        self, transport: InMemoryTransport, queue: QueueState, message: StoredMessage
    ) -> None:
        assert message.receipt is not None
        self._transport = transport
        self._queue = queue
        self._message = message
        self._receipt = message.receipt
        self.receive_count = message.receive_count

    @property
    def body(self) -> bytes:
        """The encoded envelope, exactly as sent."""
        return self._message.body

    @property
    def queue(self) -> str:
        """The name of the queue it came from."""
        return self._queue.spec.name

    @property
    def message_id(self) -> str:
        """The ``message_id`` it was sent with."""
        return self._message.message_id

    async def ack(self) -> None:
        """Remove the message for good."""
        now = await self._transport._now()
        self._queue.ack(self._message, self._receipt, now)

    async def nack(self, delay: float = 0.0) -> None:
        """Make the message visible again after ``delay`` seconds."""
        _check_seconds("delay", delay, self._transport.capabilities.max_visibility)
        now = await self._transport._now()
        self._queue.nack(self._message, self._receipt, now, delay)

    async def extend(self, visibility: float) -> None:
        """Keep the message invisible for ``visibility`` more seconds from now."""
        _check_seconds("visibility", visibility, self._transport.capabilities.max_visibility)
        now = await self._transport._now()
        self._queue.extend(self._message, self._receipt, now, visibility)

    def __repr__(self) -> str:
        return (
            f"<MemoryDelivery {self._message.message_id} from {self.queue!r}, "
            f"receive {self.receive_count}>"
        )


class InMemoryTransport:
    """A :class:`~messagebus.extension.Transport` in this process; see the module.

    Args:
        broker: the queues to use; shared between transports to model several
            processes or a restart. A new, empty broker by default.
        clock: for a new broker, its clock (monotonic seconds, ``anyio.current_time`` by
            default). Give either ``broker`` or ``clock``, not both.
    """

    def __init__(
        self,
        broker: MemoryBroker | None = None,
        *,
        clock: TimeSource | None = None,
    ) -> None:
        if broker is not None and clock is not None:
            raise InvalidArgumentError("give a broker or a clock, not both: a broker has its clock")
        if broker is None:
            broker = MemoryBroker() if clock is None else MemoryBroker(clock=clock)
        self.broker = broker
        self._closed = False
        self._receivers: set[anyio.Event] = set()

    @property
    def capabilities(self) -> Capabilities:
        """SQS's limits: :data:`MEMORY_CAPABILITIES`."""
        return MEMORY_CAPABILITIES

    async def __aenter__(self) -> InMemoryTransport:
        if self._closed:
            raise TransportUnavailableError("this transport is closed; make a new one")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close: later calls raise, waiting receives end; unsettled messages stay."""
        self._closed = True
        for event in self._receivers:
            event.set()

    async def provision(self, topology: Topology) -> None:
        """Create the queues, topics and subscriptions that do not exist yet.

        A queue with ``max_receives`` gets its dead-letter queue too (same kind and
        visibility timeout, keeping messages until acked).

        Raises:
            ConfigurationError: a queue or topic exists with other settings.
            DestinationNotFoundError: a subscription names a queue or topic that is
                neither in ``topology`` nor provisioned.
            InvalidArgumentError: a name is not 1 to 80 letters, digits, ``-`` or ``_``.
        """
        await self._now()
        self.broker.provision(topology)

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Put ``messages`` on ``queue``; all or nothing. See :meth:`Transport.send`.

        Raises:
            InvalidArgumentError: a delay out of range, or any delay on a FIFO queue.
        """
        now = await self._now()
        target = self.broker.queue(queue)
        self._check_outgoing([target], messages)
        for outgoing in messages:
            target.put(outgoing, now)

    async def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Copy ``messages`` to every queue subscribed to ``topic``; all or nothing."""
        now = await self._now()
        targets = self.broker.subscribers(topic)
        self._check_outgoing(targets, messages)
        for target in targets:
            for outgoing in messages:
                target.put(outgoing, now)

    async def receive(
        self,
        queue: str,
        *,
        max_messages: int = 10,
        wait: float = 20.0,
        visibility_timeout: float | None = None,
    ) -> Sequence[MemoryDelivery]:
        """Return up to ``max_messages`` messages, waiting up to ``wait`` s for one.

        Raises:
            DestinationNotFoundError: no such queue.
            TransportUnavailableError: the transport was closed, before or meanwhile.
            InvalidArgumentError: ``max_messages`` not 1 to 10, or a negative or overlong time.
        """
        limit = self.capabilities.max_batch_size
        if not 1 <= max_messages <= limit:
            raise InvalidArgumentError(f"max_messages must be 1 to {limit}: {max_messages}")
        if not wait >= 0:
            raise InvalidArgumentError(f"wait must not be negative: {wait}")
        if visibility_timeout is not None:
            _check_seconds(
                "visibility_timeout", visibility_timeout, self.capabilities.max_visibility
            )
        await self._now()
        state = self.broker.queue(queue)
        visibility = (
            state.spec.visibility_timeout if visibility_timeout is None else (visibility_timeout)
        )
        with self.broker.move_on_after(wait):
            while True:
                self._check_open()
                taken = state.take(self.broker.clock(), max_messages, visibility)
                if taken:
                    return [MemoryDelivery(self, state, message) for message in taken]
                await self._wait_for_news(state)
        return []

    async def depth(self, queue: str) -> QueueDepth:
        """How many messages ``queue`` holds, by state (for tests and operators)."""
        now = await self._now()
        return self.broker.queue(queue).depth(now)

    async def _wait_for_news(self, state: QueueState) -> None:
        # Woken by any change to the queue, by close, or when the next message is due;
        # the caller then looks again. Nothing is taken while waiting, so a cancelled
        # receive loses nothing.
        event = anyio.Event()
        state.waiters.add(event)
        self._receivers.add(event)
        try:
            due = state.next_due()
            timeout = math.inf if due is None else max(due - self.broker.clock(), 0.0)
            with self.broker.move_on_after(timeout):
                await event.wait()
        finally:
            state.waiters.discard(event)
            self._receivers.discard(event)

    async def _now(self) -> float:
        # A checkpoint first: each call can be cancelled before it changes anything,
        # and a task sending in a loop lets the others run.
        await anyio.lowlevel.checkpoint()
        self._check_open()
        return self.broker.clock()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportUnavailableError("the in-memory transport is closed")

    def _check_outgoing(self, targets: Sequence[QueueState], messages: Sequence[Outgoing]) -> None:
        capabilities = self.capabilities
        for outgoing in messages:
            size = len(outgoing.body)
            if size > capabilities.max_message_bytes:
                raise MessageTooLargeError(
                    outgoing.message_id, size, capabilities.max_message_bytes
                )
            _check_seconds("delay", outgoing.delay, capabilities.max_delay)
            if outgoing.delay and not capabilities.fifo_delay:
                for target in targets:
                    if target.spec.fifo:
                        raise InvalidArgumentError(
                            f"FIFO queue {target.spec.name!r} takes no per-message delay "
                            f"(message {outgoing.message_id})"
                        )


def _check_seconds(name: str, value: float, limit: float) -> None:
    if not 0 <= value <= limit:
        raise InvalidArgumentError(f"{name} must be 0 to {limit:g} seconds: {value}")
