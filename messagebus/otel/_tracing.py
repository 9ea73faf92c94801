"""A span per handler run, and the trace context carried on by its follow-ups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import attrs
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from messagebus._dispatch._run import hold_follow_ups, take_follow_ups
from messagebus._envelope import Envelope
from messagebus._errors import ArgumentTypeError, CommandRejected
from messagebus._handlers import HandlerInfo
from messagebus._messages import Message
from messagebus._middleware import CallNext, Middleware
from messagebus.otel._propagation import (
    CONVERSATION_ID,
    DESTINATION,
    MESSAGE_ID,
    OPERATION_NAME,
    OPERATION_TYPE,
    SYSTEM,
    carried_context,
    create_span,
    has_trace_context,
    with_trace_context,
)

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator

__all__ = ["TracingMiddleware", "tracer_of"]

_VERSION = "0.1.0.dev0"


def tracer_of(tracer_provider: trace.TracerProvider | None) -> trace.Tracer:
    """Return messagebus's tracer from ``tracer_provider`` (the global one if None).

    The global provider's tracer is a proxy until the application sets a provider, so
    resolving it early (at registration) loses nothing.
    """
    return trace.get_tracer("messagebus", _VERSION, tracer_provider=tracer_provider)


@attrs.frozen
class TracingMiddleware:
    """Records an OpenTelemetry span around each handler run; see :mod:`messagebus.otel`.

    The span, ``"process <message type>"`` of kind CONSUMER, is the child of the trace
    context in the envelope's headers (``traceparent`` / ``tracestate``) when it carries
    one, else of the current span. An exception is recorded on it with ERROR status;
    :class:`~messagebus.CommandRejected` is a business outcome, not an error: the status
    stays UNSET and the span says ``messagebus.outcome = "rejected"`` with the reason.

    Follow-ups the handler held back (``ctx.publish`` / ``ctx.send``) leave after the
    span has ended, so before it ends each one without a trace context of its own gets
    a PRODUCER ``"publish <type>"`` / ``"send <type>"`` span (child of the handler's)
    whose context is injected into its headers: the chain stays one trace, here or
    across a transport. Place this middleware outside
    :class:`~messagebus.middleware.RetryMiddleware` for one span per message, inside it
    for one per attempt; either side of a unit of work works (follow-ups written to the
    outbox are stamped by :data:`~messagebus.otel.inject_trace_context` instead, which
    runs inside the span).

    Args:
        tracer_provider: where spans go; the global provider if None.
        propagator: how the context is read from and written to headers; the global
            propagator (W3C trace context and baggage by default) if None.
        system: the ``messaging.system`` attribute (``"aws_sqs"`` on SQS, say).
        producer_spans: record a span per follow-up; False injects the handler span's
            own context instead.
    """

    tracer_provider: trace.TracerProvider | None = None
    propagator: TextMapPropagator | None = None
    system: str = "messagebus"
    producer_spans: bool = True

    def bind(self, handler: HandlerInfo) -> Middleware:
        """Return this middleware specialised for ``handler``."""
        tracer = tracer_of(self.tracer_provider)
        propagator, system, producer_spans = self.propagator, self.system, self.producer_spans
        name = handler.name
        subscription = {"messaging.destination.subscription.name": name}
        if handler.kind == "command":
            subscription = {}

        def stamp_follow_ups(span: trace.Span) -> None:
            held = take_follow_ups()
            if not held:
                return
            parent = trace.set_span_in_context(span)

            def stamp(envelope: Envelope[Message]) -> Envelope[Message]:
                if has_trace_context(envelope, propagator):
                    return envelope  # the sender chose its own parent
                if producer_spans:
                    return create_span(tracer, envelope, system, propagator)
                return with_trace_context(envelope, parent, propagator)

            hold_follow_ups([stamp(envelope) for envelope in held])

        async def trace_handler_run(envelope: Envelope[Message], call_next: CallNext) -> Any:
            span = tracer.start_span(
                f"process {envelope.message_type}",
                context=carried_context(envelope, propagator),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    SYSTEM: system,
                    OPERATION_TYPE: "process",
                    OPERATION_NAME: "process",
                    DESTINATION: envelope.message_type,
                    MESSAGE_ID: envelope.message_id,
                    CONVERSATION_ID: envelope.correlation_id,
                    "messagebus.handler": name,
                    "messagebus.message.kind": envelope.kind,
                    "messagebus.attempt": envelope.attempt,
                    **subscription,
                },
            )
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
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))
                    span.set_attributes(
                        {"messagebus.outcome": "failed", "error.type": type(exc).__qualname__}
                    )
                    raise
                except anyio.get_cancelled_exc_class():
                    span.set_attribute("messagebus.outcome", "cancelled")
                    raise
                span.set_attribute("messagebus.outcome", "processed")
                stamp_follow_ups(span)
            return result

        return trace_handler_run

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Not used directly: the bus calls :meth:`bind` for each handler."""
        raise ArgumentTypeError("TracingMiddleware is bound per handler by the bus; do not call it")
