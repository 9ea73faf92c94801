"""Trace context in envelope headers, and the producer span of a message leaving."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.propagators.textmap import TextMapPropagator

from messagebus._envelope import Envelope
from messagebus._messages import Message

__all__ = [
    "carried_context",
    "context_of_headers",
    "create_span",
    "creation_context",
    "has_trace_context",
    "with_trace_context",
]

SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
CONVERSATION_ID = "messaging.message.conversation_id"


def _propagator(propagator: TextMapPropagator | None) -> TextMapPropagator:
    # Read at each use, not once: the application may set the global propagator late.
    return propagate.get_global_textmap() if propagator is None else propagator


def carried_context(
    envelope: Envelope[Message], propagator: TextMapPropagator | None = None
) -> OtelContext:
    """Return the current context with the envelope's trace context (if any) as its parent.

    The envelope's headers (``traceparent``, ``tracestate``, ``baggage`` with the default
    propagators) win over the current span; without them this is the current context.
    """
    current = otel_context.get_current()
    if not envelope.headers:
        return current
    return _propagator(propagator).extract(envelope.headers, context=current)


def creation_context(
    envelope: Envelope[Message], propagator: TextMapPropagator | None = None
) -> trace.SpanContext | None:
    """Return the creation context the envelope's headers carry, or None without one.

    The creation context is the span context its producer injected (the create span's),
    which the messaging conventions have every process, receive and send span link to.
    """
    if not envelope.headers:
        return None
    return context_of_headers(envelope.headers, propagator)


def context_of_headers(
    headers: Mapping[str, str], propagator: TextMapPropagator | None = None
) -> trace.SpanContext | None:
    """Return the valid span context ``headers`` carry (``traceparent``), or None."""
    extracted = _propagator(propagator).extract(headers)
    span_context = trace.get_current_span(extracted).get_span_context()
    return span_context if span_context.is_valid else None


def has_trace_context(
    envelope: Envelope[Message], propagator: TextMapPropagator | None = None
) -> bool:
    """Tell whether ``envelope``'s headers carry a valid trace context."""
    return creation_context(envelope, propagator) is not None


def with_trace_context(
    envelope: Envelope[Message],
    context: OtelContext | None = None,
    propagator: TextMapPropagator | None = None,
) -> Envelope[Message]:
    """Return ``envelope`` with ``context`` (the current one if None) injected into its headers.

    Headers already there are kept, except the propagator's own, which are replaced.
    An envelope comes back unchanged when there is nothing to inject (no valid span).
    """
    headers = dict(envelope.headers)
    _propagator(propagator).inject(headers, context=context)
    if headers == envelope.headers:
        return envelope
    return envelope.replace(headers=headers)


def create_span(
    tracer: trace.Tracer,
    envelope: Envelope[Message],
    system: str,
    propagator: TextMapPropagator | None = None,
) -> Envelope[Message]:
    """Record a PRODUCER "create" span for ``envelope`` (a child of the current span).

    Returns the envelope carrying that span's context: whoever processes the message
    later, here or in another service, is that span's child. The span is ended at once:
    it marks the moment the message was made, one per message, as the messaging
    conventions have it for batched sends (the bus sends in batches later).
    """
    verb = "publish" if envelope.kind == "event" else "send"
    span = tracer.start_span(
        f"{verb} {envelope.message_type}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            SYSTEM: system,
            OPERATION_TYPE: "create",
            OPERATION_NAME: verb,
            DESTINATION: envelope.message_type,
            MESSAGE_ID: envelope.message_id,
            CONVERSATION_ID: envelope.correlation_id,
        },
    )
    try:
        return with_trace_context(envelope, trace.set_span_in_context(span), propagator)
    finally:
        span.end()
