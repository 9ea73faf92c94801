"""Client spans and metrics around a transport: send, publish, receive and settle."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import msgspec
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from messagebus.otel._instruments import (
    client_operation_duration,
    consumed_messages,
    sent_messages,
)
from messagebus.otel._propagation import (
    DESTINATION,
    MESSAGE_ID,
    OPERATION_NAME,
    OPERATION_TYPE,
    SYSTEM,
    context_of_headers,
)
from messagebus.otel._tracing import error_type, tracer_of
from messagebus.transports import TransportWrapper
from messagebus.transports._protocol import (
    Delivery,
    Outgoing,
    Transport,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.util.types import AttributeValue

__all__ = ["TracedTransport"]

BATCH_COUNT = "messaging.batch.message_count"


class _Headers(msgspec.Struct):
    """The one field of a CloudEvents body that carries the trace context."""

    headers: str | None = None


_BODY = msgspec.json.Decoder(_Headers)
_HEADER_MAP = msgspec.json.Decoder(dict[str, str])


class TracedTransport(TransportWrapper):
    """A :class:`~messagebus.extension.Transport` that traces another, by the conventions.

    ``MessageBus(transport=TracedTransport(SQSTransport(...)))``. Every call becomes a
    span of OpenTelemetry's messaging semantic conventions, and is measured:

    - ``send <queue>`` / ``publish <topic>``: CLIENT spans (the messages' creation
      contexts come from their own create spans, see
      :class:`~messagebus.otel.TraceContextInjector`), **linked to the creation context
      of every message in the batch**, with ``messaging.batch.message_count`` (or
      ``messaging.message.id`` for one message).
    - ``receive <queue>``: a CONSUMER span per receive call, linked to the creation
      context of each message it returned.
    - ``ack <queue>`` / ``nack <queue>``: a CLIENT ``settle`` span per settlement.
    - ``messaging.client.operation.duration`` (seconds; every operation above),
      ``messaging.client.sent.messages`` and ``messaging.client.consumed.messages``.

    ``messaging.destination.name`` (and the span names) is the broker's name of the
    queue or topic where the transport says it
    (:class:`~messagebus.extension.NamedTransport`: SQS's ``<prefix><name>[.fifo]``,
    EventBridge's bus), else the logical name. ``messaging.system`` is the transport's
    own, from its capabilities (``aws_sqs`` for queues, ``aws_sns`` or
    ``aws_eventbridge`` for topics). A failed call gets ERROR status and a fully
    qualified ``error.type``, and raises as it would untraced.

    Args:
        transport: the transport to trace; its lifecycle is this one's.
        tracer_provider: where spans go; the global provider if None.
        meter_provider: where the instruments go; the global provider if None.
        propagator: how creation contexts are read from message headers; the global
            propagator if None.
        metrics: record the instruments (spans are always recorded).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        propagator: TextMapPropagator | None = None,
        metrics: bool = True,
    ) -> None:
        super().__init__(transport)
        self._tracer = tracer_of(tracer_provider)
        self._propagator = propagator
        self._metrics = metrics
        self._durations = client_operation_duration(meter_provider)
        self._sent = sent_messages(meter_provider)
        self._consumed = consumed_messages(meter_provider)

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Send through the traced transport, in a ``send <queue>`` span."""
        system = self.inner.capabilities.system
        with self._operation("send", "send", queue, system, messages) as where:
            await self.inner.send(queue, messages)
        if self._metrics:
            self._sent.add(len(messages), _attributes("send", "send", where(), system))

    async def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Publish through the traced transport, in a ``publish <topic>`` span."""
        capabilities = self.inner.capabilities
        system = capabilities.topic_system or capabilities.system
        with self._operation("publish", "send", topic, system, messages, topic=True) as where:
            await self.inner.publish(topic, messages)
        if self._metrics:
            self._sent.add(len(messages), _attributes("publish", "send", where(), system))

    async def receive(
        self,
        queue: str,
        *,
        max_messages: int = 10,
        wait: float = 20.0,
        visibility_timeout: float | None = None,
    ) -> list[Delivery]:
        """Receive through the traced transport, in a ``receive <queue>`` span."""
        system = self.inner.capabilities.system
        started = time.perf_counter()
        destination = self.address(queue)
        span = self._tracer.start_span(
            f"receive {destination}",
            kind=trace.SpanKind.CONSUMER,
            attributes=_attributes("receive", "receive", destination, system),
        )
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                deliveries = await self.inner.receive(
                    queue,
                    max_messages=max_messages,
                    wait=wait,
                    visibility_timeout=visibility_timeout,
                )
            except Exception as error:
                failed = _attributes("receive", "receive", destination, system)
                self._failed(span, error, failed, started)
                raise
            destination = _renamed(span, "receive", destination, self.address(queue))
            for delivery in deliveries:
                creation = self._creation_context(delivery.body)
                if creation is not None:
                    span.add_link(creation)
            span.set_attribute(BATCH_COUNT, len(deliveries))
        if self._metrics:
            attributes = _attributes("receive", "receive", destination, system)
            self._durations.record(time.perf_counter() - started, attributes)
            if deliveries:
                self._consumed.add(len(deliveries), attributes)
        return [_TracedDelivery(delivery, self, system) for delivery in deliveries]

    @contextmanager
    def _operation(
        self,
        name: str,
        kind: str,
        logical: str,
        system: str,
        messages: Sequence[Outgoing],
        *,
        topic: bool = False,
    ) -> Iterator[Callable[[], str]]:
        """Run the block in a CLIENT span; yield what gives the destination's name after it.

        The broker's name is asked before the call and again after it: the call may
        have resolved a queue or topic first used now (an SQS FIFO queue's ``.fifo``).
        """
        started = time.perf_counter()
        destination = self.address(logical, topic=topic)
        attributes = _attributes(name, kind, destination, system)
        if len(messages) == 1:
            attributes[MESSAGE_ID] = messages[0].message_id
        else:
            attributes[BATCH_COUNT] = len(messages)
        links = [
            trace.Link(context)
            for context in map(self._creation_context, (message.body for message in messages))
            if context is not None
        ]
        span = self._tracer.start_span(
            f"{name} {destination}",
            kind=trace.SpanKind.CLIENT,
            links=links,
            attributes=attributes,
        )
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                # A closure, so that what it gives after the block is the renamed one.
                yield lambda: destination
            except Exception as error:
                self._failed(span, error, _attributes(name, kind, destination, system), started)
                raise
            destination = _renamed(span, name, destination, self.address(logical, topic=topic))
        if self._metrics:
            self._durations.record(
                time.perf_counter() - started,
                _attributes(name, kind, destination, system),
            )

    def _failed(
        self,
        span: trace.Span,
        error: Exception,
        attributes: dict[str, AttributeValue],
        started: float,
    ) -> None:
        failure = error_type(error)
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}"))
        span.set_attribute("error.type", failure)
        if self._metrics:
            self._durations.record(
                time.perf_counter() - started, {**attributes, "error.type": failure}
            )

    def _creation_context(self, body: bytes) -> trace.SpanContext | None:
        # Only the headers field is decoded; a body that is not ours has no context.
        try:
            headers = _BODY.decode(body).headers
            if headers is None:
                return None
            return context_of_headers(_HEADER_MAP.decode(headers), self._propagator)
        except msgspec.DecodeError:
            return None

    async def settle(
        self, delivery: Delivery, system: str, name: str, delay: float | None = None
    ) -> None:
        """Ack (``delay`` None) or nack ``delivery`` in a ``settle`` span."""
        queue = self.address(delivery.queue)
        started = time.perf_counter()
        span = self._tracer.start_span(
            f"{name} {queue}",
            kind=trace.SpanKind.CLIENT,
            attributes=_attributes(name, "settle", queue, system),
        )
        creation = self._creation_context(delivery.body)
        if creation is not None:
            span.add_link(creation)
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                if delay is None:
                    await delivery.ack()
                else:
                    await delivery.nack(delay)
            except Exception as error:
                self._failed(span, error, _attributes(name, "settle", queue, system), started)
                raise
        if self._metrics:
            self._durations.record(
                time.perf_counter() - started, _attributes(name, "settle", queue, system)
            )


class _TracedDelivery:
    """A delivery whose ack and nack are ``settle`` spans of its traced transport."""

    __slots__ = ("_delivery", "_system", "_transport")

    def __init__(self, delivery: Delivery, transport: TracedTransport, system: str) -> None:
        self._delivery = delivery
        self._transport = transport
        self._system = system

    @property
    def body(self) -> bytes:
        return self._delivery.body

    @property
    def queue(self) -> str:
        return self._delivery.queue

    @property
    def receive_count(self) -> int:
        return self._delivery.receive_count

    async def ack(self) -> None:
        await self._transport.settle(self._delivery, self._system, "ack")

    async def nack(self, delay: float = 0.0) -> None:
        await self._transport.settle(self._delivery, self._system, "nack", delay)

    async def extend(self, visibility: float) -> None:
        await self._delivery.extend(visibility)


def _renamed(span: trace.Span, name: str, was: str, now: str) -> str:
    """Give ``span`` the destination ``now`` if it is not ``was``; return ``now``."""
    if now != was:
        span.update_name(f"{name} {now}")
        span.set_attribute(DESTINATION, now)
    return now


def _attributes(name: str, kind: str, destination: str, system: str) -> dict[str, AttributeValue]:
    return {
        SYSTEM: system,
        OPERATION_NAME: name,
        OPERATION_TYPE: kind,
        DESTINATION: destination,
    }
