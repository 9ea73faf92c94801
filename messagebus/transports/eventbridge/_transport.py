"""Events through EventBridge, everything else through a queue transport.

:class:`EventBridgeTransport` is a :class:`~messagebus.extension.Transport` made of two:

- ``publish`` puts events on an EventBridge bus with PutEvents, through an ``events``
  client (aiobotocore's, or the in-memory :class:`MemoryEventBridge`; any object with
  the methods of :class:`EventsClient`). Each message is one entry: ``Detail`` is our
  CloudEvents envelope JSON, ``DetailType`` its ``type`` (the wire type), ``Source`` its
  ``source`` (the service), ``EventBusName`` the bus. A call carries at most 10 entries
  and ``max_request_bytes``; a body over ``capabilities.max_message_bytes``
  (``max_entry_bytes`` less 1 KiB kept for the entry's other fields), or an entry over
  ``max_entry_bytes`` (sized as AWS counts), is refused before anything is sent
  (:class:`~messagebus.MessageTooLargeError`). Entries AWS fails on its side
  (``InternalFailure``, throttling) are sent again, alone, up to ``max_attempts`` in
  all; what is still not sent then, or was refused, raises
  :class:`~messagebus.SendError` listing each message and its reason, after the others
  were sent. EventBridge cannot delay: a delay is an
  :class:`~messagebus.InvalidArgumentError`.
- Publishes of concurrent tasks share PutEvents calls (the SQS transport's coalescing,
  :mod:`messagebus.transports._coalesce`): a publish that does not fill a call waits up
  to ``publish_window`` seconds for others to join it; a full call goes at once; each
  caller waits for its own entries only and gets its own errors. Up to 8 calls run at
  once, in a task group the transport holds while it is open. EventBridge keeps no
  order within or across calls, so neither does this.
- ``send``, ``receive`` and the queues of ``provision`` are the queue transport's (SQS,
  or in memory): commands still go point to point, and events arrive in each
  subscribing service's queue through a rule whose target is that queue. A delivery
  whose body is an AWS event (``detail-type``, ``detail``) is handed on with our
  envelope from ``detail`` as its body, so the worker reads it like any other.
- ``provision`` creates the queues (queue transport), the bus unless it is
  ``default``, and per subscribing queue one rule ``<prefix><queue>-events`` matching
  ``detail-type`` against the wire types of the topics it subscribes to (from
  :attr:`~messagebus.transports.TopicSpec.message_types`), targeting the queue. A
  service's topology names all its subscriptions, so the rule is replaced, not merged.
  A queue transport that can grant AWS services the right to send to its queues (the
  SQS transport's ``allow_service``) is asked to, for each rule: the queue's policy
  then lets ``events.amazonaws.com`` ``sqs:SendMessage`` with condition
  ``aws:SourceArn`` = the rule's ARN, and the target is the ARN it answers. Other queue
  transports (in memory) get ``queue_arn``'s ARN.
- A FIFO queue (its :class:`~messagebus.transports.QueueSpec` says so, or its ARN ends
  in ``.fifo``) is targeted with ``SqsParameters.MessageGroupId`` = the logical queue
  name, and the SQS transport turns on its content-based deduplication (AWS requires
  both). EventBridge's group id is static: all the events a rule delivers to a FIFO
  queue are one group, handled one at a time in the order EventBridge delivered them,
  which is not the order they were published in (EventBridge keeps none).

Not yet: direct Lambda targets.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypedDict, runtime_checkable

import anyio
import attrs

from messagebus._errors import (
    InvalidArgumentError,
    MessageTooLargeError,
    TransportError,
)
from messagebus.transports._batch_calls import Failures
from messagebus.transports._coalesce import SendCollector
from messagebus.transports._protocol import (
    Capabilities,
    Delivery,
    NamedTransport,
    Outgoing,
    Topology,
    Transport,
)
from messagebus.transports.eventbridge._double import entry_size
from messagebus.transports.eventbridge._errors import RETRYABLE_ENTRY_CODES, translated

__all__ = ["EventBridgeDelivery", "EventBridgeTransport", "EventsClient", "unwrap_event"]

DEFAULT_MAX_BYTES = 256 * 1024
EVENTS_SERVICE = "events.amazonaws.com"
ENTRY_RESERVE = 1024
"""Bytes of an entry kept for ``Source``, ``DetailType`` and ``Time`` beside the body."""


class EventsClient(Protocol):
    """The calls the transport makes on an EventBridge client (aiobotocore's names)."""

    async def put_events(self, *, Entries: Any) -> Any: ...

    async def create_event_bus(self, *, Name: str) -> Any: ...

    async def describe_event_bus(self, *, Name: str) -> Any: ...

    async def put_rule(self, *, Name: str, EventPattern: str, EventBusName: str) -> Any: ...

    async def put_targets(self, *, Rule: str, Targets: Any, EventBusName: str) -> Any: ...


@runtime_checkable
class _AllowsServices(Protocol):
    """A queue transport that can let an AWS service send to a queue (the SQS one)."""

    async def allow_service(self, queue: str, *, service: str, source_arn: str) -> str: ...


def unwrap_event(body: bytes) -> bytes:
    """Return our envelope from an AWS event body (its ``detail``); other bodies as they are."""
    if b'"detail-type"' not in body:
        return body
    try:
        event = json.loads(body)
    except ValueError:
        return body  # the worker's decoder says what is wrong with it
    if isinstance(event, dict) and "detail-type" in event and isinstance(event.get("detail"), dict):
        return json.dumps(event["detail"], ensure_ascii=False, separators=(",", ":")).encode()
    return body


@attrs.frozen(eq=False)
class EventBridgeDelivery:
    """A delivery of the queue transport, its body unwrapped from an AWS event if it was one."""

    body: bytes
    _inner: Delivery = attrs.field(alias="inner")

    @property
    def queue(self) -> str:
        """The logical name of the queue it came from."""
        return self._inner.queue

    @property
    def receive_count(self) -> int:
        """The queue transport's receive count."""
        return self._inner.receive_count

    async def ack(self) -> None:
        """Remove the message for good."""
        await self._inner.ack()

    async def nack(self, delay: float = 0.0) -> None:
        """Make the message visible again after ``delay`` seconds."""
        await self._inner.nack(delay)

    async def extend(self, visibility: float) -> None:
        """Keep the message invisible for ``visibility`` more seconds."""
        await self._inner.extend(visibility)


class _Item(TypedDict):
    """A PutEvents entry waiting in the collector, ``Id`` its place in its call."""

    Id: str
    Entry: dict[str, str]


class EventBridgeTransport:
    """Events on EventBridge, commands and receiving on a queue transport; see the module.

    Args:
        queues: the queue transport (entered and left with this one).
        events: the EventBridge client, open for as long as this transport is used
            (the caller opens and closes it); or else
        open_events: opens the client when the transport is entered, closed when it is
            left (``eventbridge://`` URLs use this).
        bus: the event bus's name or ARN.
        queue_arn: the ARN of a logical queue, for rule targets, when the queue
            transport cannot tell it (the SQS transport can, and sets the queue's
            policy); by default ``arn:aws:sqs:<region>:<account>:<prefix><queue>``, the
            region and account read from the bus's ARN (DescribeEventBus).
        prefix: put before queue names in the default ``queue_arn`` and before rule
            names (use the queue transport's).
        max_attempts: PutEvents attempts per entry failed on AWS's side, in all.
        retry_delay: seconds before the first retry (doubling after each).
        max_entry_bytes, max_request_bytes: AWS's limits (256 KiB on LocalStack and
            before 2026; AWS takes 1 MB per entry since).
        publish_window: seconds a publish that does not fill a PutEvents call waits for
            concurrent publishes to join it (0: only those of the same moment).
    """

    def __init__(
        self,
        queues: Transport,
        events: EventsClient | None = None,
        *,
        bus: str = "default",
        queue_arn: Callable[[str], str] | None = None,
        prefix: str = "",
        open_events: Callable[[], contextlib.AbstractAsyncContextManager[EventsClient]]
        | None = None,
        max_attempts: int = 3,
        retry_delay: float = 0.05,
        max_entry_bytes: int = DEFAULT_MAX_BYTES,
        max_request_bytes: int = DEFAULT_MAX_BYTES,
        publish_window: float = 0.005,
    ) -> None:
        if max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be at least 1: {max_attempts}")
        if max_entry_bytes <= ENTRY_RESERVE:
            raise InvalidArgumentError(
                f"max_entry_bytes must be more than {ENTRY_RESERVE}: {max_entry_bytes}"
            )
        if publish_window < 0:
            raise InvalidArgumentError(f"publish_window must be at least 0: {publish_window}")
        self.queues = queues
        if (events is None) == (open_events is None):
            raise InvalidArgumentError("give the events client or open_events, one of them")
        self._events = events
        self._open_events = open_events
        self._stack: contextlib.AsyncExitStack | None = None
        self.bus = bus
        self._queue_arn = queue_arn
        self._prefix = prefix
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._max_entry_bytes = max_entry_bytes
        self._max_request_bytes = max_request_bytes
        self._max_body_bytes = min(
            queues.capabilities.max_message_bytes, max_entry_bytes - ENTRY_RESERVE
        )
        self._publish_window = publish_window
        self._collector: SendCollector[_Item] | None = None

    @property
    def capabilities(self) -> Capabilities:
        """The queue transport's, with EventBridge's size limit and its routing by type.

        ``max_message_bytes`` is the largest body an entry surely holds: the entry limit
        less :data:`ENTRY_RESERVE` bytes for the other fields. It holds for sends to
        queues too, so that a message's size never decides whether it may be published.
        """
        inner = self.queues.capabilities
        return attrs.evolve(
            inner,
            fan_out=True,
            max_message_bytes=self._max_body_bytes,
            topic_system="aws_eventbridge",
            routes_by_type=True,
        )

    def address(self, name: str, *, fifo: bool | None = None, topic: bool = False) -> str:
        """Return the broker's name of queue or topic ``name``.

        Every topic is the event bus (rules route by type), so a topic's name is the
        bus's (the name part of an ARN); a queue's is the queue transport's name of it.
        See :class:`~messagebus.extension.NamedTransport`.
        """
        if topic:
            return self.bus.rsplit("/", 1)[-1]
        if isinstance(self.queues, NamedTransport):
            return self.queues.address(name, fifo=fifo)
        return name

    @property
    def events(self) -> EventsClient:
        """The EventBridge client in use.

        Raises:
            TransportError: the transport opens its client, and is not open.
        """
        if self._events is None:
            raise TransportError("EventBridgeTransport is not open: use it in 'async with'")
        return self._events

    async def __aenter__(self) -> EventBridgeTransport:
        async with contextlib.AsyncExitStack() as stack:
            if self._open_events is not None:
                self._events = await stack.enter_async_context(self._open_events())
                stack.callback(setattr, self, "_events", None)
            await stack.enter_async_context(self.queues)
            # Shared PutEvents calls run here, apart from the publishers that asked for
            # them; on leaving, what is pending goes at once and is waited for.
            tasks = await stack.enter_async_context(anyio.create_task_group())
            self._collector = collector = SendCollector(
                self._put_events,
                tasks,
                self._publish_window,
                max_bytes=self._max_request_bytes,
                in_order=False,
                attempts=self._max_attempts,
                retry_delay=self._retry_delay,
            )
            stack.callback(setattr, self, "_collector", None)
            stack.callback(collector.close)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def provision(self, topology: Topology) -> None:
        """Create the queues, the bus and one rule per subscribing queue; see the module.

        Raises:
            InvalidArgumentError: a subscribed topic whose message types are unknown.
        """
        types_of = {topic.name: topic.message_types for topic in topology.topics}
        fifo = {queue.name: queue.fifo for queue in topology.queues}
        wanted: dict[str, set[str]] = {}
        for subscription in topology.subscriptions:
            types = types_of.get(subscription.topic)
            if not types:
                raise InvalidArgumentError(
                    f"topic {subscription.topic!r}: EventBridge rules match wire types, and "
                    "this topology does not say which (TopicSpec.message_types)"
                )
            wanted.setdefault(subscription.queue, set()).update(types)
        await self.queues.provision(Topology(queues=topology.queues))
        if not wanted:
            return
        if self.bus != "default":
            await self._create_bus()
        queue_arn = self._queue_arn
        for queue, wire_types in sorted(wanted.items()):
            rule = f"{self._prefix}{queue}-events"
            with translated(f"rule {rule!r}"):
                made = await self.events.put_rule(
                    Name=rule,
                    EventPattern=json.dumps({"detail-type": sorted(wire_types)}),
                    EventBusName=self.bus,
                )
            if isinstance(self.queues, _AllowsServices):
                arn = await self.queues.allow_service(
                    queue, service=EVENTS_SERVICE, source_arn=str(made["RuleArn"])
                )
            else:
                queue_arn = queue_arn or await self._queue_arns()
                arn = queue_arn(queue)
            target: dict[str, Any] = {"Id": "queue", "Arn": arn}
            if fifo.get(queue) or arn.endswith(".fifo"):
                target["SqsParameters"] = {"MessageGroupId": queue}
            with translated(f"rule {rule!r}"):
                answer = await self.events.put_targets(
                    Rule=rule, EventBusName=self.bus, Targets=[target]
                )
            if answer.get("FailedEntryCount"):
                raise TransportError(f"rule {rule!r}: target refused: {answer['FailedEntries']}")

    async def _queue_arns(self) -> Callable[[str], str]:
        """Return the default ``queue_arn``: the bus's region and account, standard queues."""
        with translated(f"event bus {self.bus!r}"):
            answer = await self.events.describe_event_bus(Name=self.bus)
        # arn:aws:events:<region>:<account>:event-bus/<name>
        _, partition, _, region, account, _ = str(answer["Arn"]).split(":", 5)
        return lambda queue: f"arn:{partition}:sqs:{region}:{account}:{self._prefix}{queue}"

    async def _create_bus(self) -> None:
        try:
            with translated(f"event bus {self.bus!r}"):
                await self.events.create_event_bus(Name=self.bus)
        except TransportError as error:
            cause = getattr(error.__cause__, "response", {})
            if cause.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                raise

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Send to a queue of the queue transport (bodies up to ``max_message_bytes``)."""
        for message in messages:
            self._check_size(message)
        await self.queues.send(queue, messages)

    def _check_size(self, message: Outgoing) -> None:
        if len(message.body) > self._max_body_bytes:
            raise MessageTooLargeError(message.message_id, len(message.body), self._max_body_bytes)

    async def receive(
        self,
        queue: str,
        *,
        max_messages: int = 10,
        wait: float = 20.0,
        visibility_timeout: float | None = None,
    ) -> Sequence[EventBridgeDelivery]:
        """Receive from the queue transport; AWS event bodies unwrapped to our envelope."""
        deliveries = await self.queues.receive(
            queue, max_messages=max_messages, wait=wait, visibility_timeout=visibility_timeout
        )
        return [EventBridgeDelivery(unwrap_event(each.body), inner=each) for each in deliveries]

    async def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Put ``messages`` on the bus with PutEvents, sharing calls; see the module.

        ``topic`` is not used: rules route by ``detail-type``, the wire type.
        """
        if not messages:
            return
        if self._collector is None:
            raise TransportError("EventBridgeTransport is not open: use it in 'async with'")
        entries = [self._entry(message) for message in messages]
        await self._collector.send(
            messages,
            {},
            lambda index, entry_id: {"Id": entry_id, "Entry": entries[index][0]},
            sizes=[size for _, size in entries],
        )

    def _entry(self, message: Outgoing) -> tuple[dict[str, str], int]:
        """Return the PutEvents entry of ``message`` and its size as AWS counts it."""
        if message.delay:
            raise InvalidArgumentError("EventBridge cannot delay an event: send it to a queue")
        self._check_size(message)
        try:
            envelope = json.loads(message.body)
            wire_type, source = str(envelope["type"]), str(envelope["source"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgumentError(
                f"message {message.message_id}: not a CloudEvents envelope ({exc})"
            ) from exc
        entry = {
            "Source": source,
            "DetailType": wire_type,
            "Detail": message.body.decode(),
            "EventBusName": self.bus,
        }
        size = entry_size(entry)
        if size > self._max_entry_bytes:
            raise MessageTooLargeError(message.message_id, size, self._max_entry_bytes)
        return entry, size

    async def _put_events(self, batch: list[_Item]) -> Failures:
        """One PutEvents call; its per-entry errors in SQS's ``Failed`` shape (by ``Id``)."""
        with translated(f"event bus {self.bus!r}"):
            answer = await self.events.put_events(Entries=[item["Entry"] for item in batch])
        if not answer.get("FailedEntryCount"):
            return []
        return [
            {
                "Id": item["Id"],
                "Code": code,
                "Message": result.get("ErrorMessage", ""),
                "SenderFault": code not in RETRYABLE_ENTRY_CODES,
            }
            for item, result in zip(batch, answer.get("Entries", []), strict=True)
            if (code := result.get("ErrorCode"))
        ]
