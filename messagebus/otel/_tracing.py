"""A span per handler run, and the trace context carried on by its follow-ups."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

import messagebus
from messagebus._dispatch._run import hold_follow_ups, take_follow_ups
from messagebus._envelope import Envelope
from messagebus._errors import ArgumentTypeError, CommandRejected
from messagebus._handlers import HandlerInfo
from messagebus._messages import Message
from messagebus._middleware import CallNext, Middleware
from messagebus._received import received_from
from messagebus.otel._instruments import package_version, process_duration
from messagebus.otel._propagation import (
    CONVERSATION_ID,
    DESTINATION,
    MESSAGE_ID,
    OPERATION_NAME,
    OPERATION_TYPE,
    SYSTEM,
    carried_context,
    create_span,
    creation_context,
    has_trace_context,
    with_trace_context,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context as OtelContext
    from opentelemetry.metrics import Histogram, MeterProvider
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.util.types import AttributeValue

__all__ = ["TracingMiddleware", "error_type", "tracer_of"]


def tracer_of(tracer_provider: trace.TracerProvider | None) -> trace.Tracer:
    """Return messagebus's tracer from ``tracer_provider`` (the global one if None).

    The global provider's tracer is a proxy until the application sets a provider, so
    resolving it early (at registration) loses nothing. Its instrumentation scope is
    ``messagebus`` at the installed package's version.
    """
    return trace.get_tracer("messagebus", package_version(), tracer_provider=tracer_provider)


def error_type(error: BaseException) -> str:
    """Return the ``error.type`` of ``error``: its class's fully qualified name.

    Builtins keep their bare name (``ValueError``), as Python's tracebacks print them;
    messagebus's own errors are named where the package exports them
    (``messagebus.SendError``), not by the private module that defines them.
    """
    cls = type(error)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    if module.startswith("messagebus._") and getattr(messagebus, cls.__qualname__, None) is cls:
        return f"messagebus.{cls.__qualname__}"
    return f"{module}.{cls.__qualname__}"


def start_process_span(
    tracer: trace.Tracer,
    envelope: Envelope[Message],
    destination: str,
    *,
    parent: OtelContext | None,
    creation: trace.SpanContext | None,
    attributes: dict[str, AttributeValue],
) -> trace.Span:
    """Start the CONSUMER ``process <destination>`` span of a handler run on ``envelope``.

    It is the child of ``parent`` (the current context if None) and links to the
    message's ``creation`` context when it has one; ``attributes`` are added to the
    conventions' own.
    """
    return tracer.start_span(
        f"process {destination}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        links=() if creation is None else (trace.Link(creation),),
        attributes={
            OPERATION_TYPE: "process",
            OPERATION_NAME: "process",
            DESTINATION: destination,
            MESSAGE_ID: envelope.message_id,
            CONVERSATION_ID: envelope.correlation_id,
            "cloudevents.event_id": envelope.message_id,
            "cloudevents.event_type": envelope.message_type,
            "cloudevents.event_spec_version": "1.0",
            "messagebus.message.kind": envelope.kind,
            "messagebus.attempt": envelope.attempt,
            **attributes,
        },
    )


def record_duration(
    durations: Histogram, started: float, system: str, destination: str, failure: str | None
) -> None:
    """Record a handler run that began at ``started`` (``perf_counter``) in ``durations``."""
    attributes: dict[str, AttributeValue] = {
        SYSTEM: system,
        OPERATION_NAME: "process",
        OPERATION_TYPE: "process",
        DESTINATION: destination,
    }
    if failure is not None:
        attributes["error.type"] = failure
    durations.record(time.perf_counter() - started, attributes)


@attrs.frozen
class TracingMiddleware:
    """Records an OpenTelemetry span around each handler run; see :mod:`messagebus.otel`.

    The span, ``"process <destination>"`` of kind CONSUMER, follows the messaging
    semantic conventions:

    - It **links** to the message's creation context (the trace context in the
      envelope's headers, ``traceparent`` / ``tracestate``), as the conventions say it
      SHOULD, and by default is also that context's child (the MAY: one trace from the
      request to the last subscriber). ``continue_trace=False`` makes it a child of the
      current span instead (a new trace per message when there is none), the link alone
      leading back to the producer.
    - ``messaging.destination.name`` is the queue the message was received from (the
      worker tells it, with the transport's ``messaging.system``: ``aws_sqs``), or the
      message type for one dispatched in-process, where the bus is the intermediary.
    - The message's CloudEvents attributes (``cloudevents.event_id``,
      ``cloudevents.event_type``, ``cloudevents.event_spec_version``), its ids, the
      handler, the attempt, and on failure a fully qualified ``error.type``.

    An exception is recorded on it with ERROR status; :class:`~messagebus.CommandRejected`
    is a business outcome, not an error: the status stays UNSET and the span says
    ``messagebus.outcome = "rejected"`` with the reason.

    With a ``meter_provider`` (or the global one, ``metrics=True``), each run is also
    recorded in the ``messaging.process.duration`` histogram (seconds), with the
    system, operation, destination and, on failure, ``error.type``.

    Follow-ups the handler held back (``ctx.publish`` / ``ctx.send``) leave after the
    span has ended, so before it ends each one without a trace context of its own gets
    a PRODUCER ``"publish <type>"`` / ``"send <type>"`` create span (child of the
    handler's) whose context is injected into its headers: the chain stays one trace,
    here or across a transport. Place this middleware outside
    :class:`~messagebus.middleware.RetryMiddleware` for one span per message, inside it
    for one per attempt; either side of a unit of work works (follow-ups written to the
    outbox are stamped by :data:`~messagebus.otel.inject_trace_context` instead, which
    runs inside the span).

    Args:
        tracer_provider: where spans go; the global provider if None.
        propagator: how the context is read from and written to headers; the global
            propagator (W3C trace context and baggage by default) if None.
        system: the ``messaging.system`` attribute; None takes the receiving
            transport's (``aws_sqs`` on SQS), and ``"messagebus"`` in-process.
        producer_spans: record a span per follow-up; False injects the handler span's
            own context instead.
        continue_trace: make the process span the child of the creation context (True)
            or of the current span (False); it links to the creation context either way.
        metrics: record the ``messaging.process.duration`` histogram.
        meter_provider: where the histogram goes; the global provider if None.
    """

    tracer_provider: trace.TracerProvider | None = None
    propagator: TextMapPropagator | None = None
    system: str | None = None
    producer_spans: bool = True
    continue_trace: bool = True
    metrics: bool = True
    meter_provider: MeterProvider | None = None

    def bind(self, handler: HandlerInfo) -> Middleware:
        """Return this middleware specialised for ``handler``."""
        tracer = tracer_of(self.tracer_provider)
        propagator, producer_spans = self.propagator, self.producer_spans
        continue_trace, chosen_system = self.continue_trace, self.system
        durations = process_duration(self.meter_provider) if self.metrics else None
        name = handler.name
        subscription: dict[str, AttributeValue] = {"messaging.destination.subscription.name": name}
        if handler.kind == "command":
            subscription = {}

        def stamp_follow_ups(span: trace.Span) -> None:
            held = take_follow_ups()
            if not held:
                return
            parent = trace.set_span_in_context(span)
            system = chosen_system or "messagebus"

            def stamp(envelope: Envelope[Message]) -> Envelope[Message]:
                if has_trace_context(envelope, propagator):
                    return envelope  # the sender chose its own parent
                if producer_spans:
                    return create_span(tracer, envelope, system, propagator)
                return with_trace_context(envelope, parent, propagator)

            hold_follow_ups([stamp(envelope) for envelope in held])

        async def trace_handler_run(envelope: Envelope[Message], call_next: CallNext) -> Any:
            received = received_from()
            if received is None:
                system, destination = chosen_system or "messagebus", envelope.message_type
            else:
                system, destination = chosen_system or received.system, received.queue
            span = start_process_span(
                tracer,
                envelope,
                destination,
                parent=carried_context(envelope, propagator) if continue_trace else None,
                creation=creation_context(envelope, propagator),
                attributes={SYSTEM: system, "messagebus.handler": name, **subscription},
            )
            failure: str | None = None
            started = time.perf_counter()
            try:
                with trace.use_span(
                    span, end_on_exit=True, record_exception=False, set_status_on_exception=False
                ):
                    try:
                        result = await call_next(envelope)
                    except CommandRejected as exc:
                        span.set_attributes(
                            {
                                "messagebus.outcome": "rejected",
                                "messagebus.rejection.reason": exc.reason,
                            }
                        )
                        raise
                    except Exception as exc:
                        failure = error_type(exc)
                        span.record_exception(exc)
                        span.set_status(
                            Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}")
                        )
                        span.set_attributes({"messagebus.outcome": "failed", "error.type": failure})
                        raise
                    except anyio.get_cancelled_exc_class():
                        span.set_attribute("messagebus.outcome", "cancelled")
                        raise
                    span.set_attribute("messagebus.outcome", "processed")
                    stamp_follow_ups(span)
            finally:
                if durations is not None:
                    record_duration(durations, started, system, destination, failure)
            return result

        return trace_handler_run

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Not used directly: the bus calls :meth:`bind` for each handler."""
        raise ArgumentTypeError("TracingMiddleware is bound per handler by the bus; do not call it")
