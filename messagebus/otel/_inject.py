"""The ``outgoing`` hook that gives messages leaving the process a trace context."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from opentelemetry import trace

from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus.otel._propagation import create_span, has_trace_context, with_trace_context
from messagebus.otel._tracing import tracer_of

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator

__all__ = ["TraceContextInjector", "inject_trace_context"]


@attrs.frozen
class TraceContextInjector:
    """An ``outgoing`` hook: ``MessageBus(outgoing=[TraceContextInjector()])``.

    Applied by the bus to every envelope as it leaves the process (handed to the
    transport, or written to the outbox). An envelope that already carries a trace
    context (a follow-up stamped by :class:`~messagebus.otel.TracingMiddleware`, or one
    the sender gave headers) passes unchanged. Any other gets a PRODUCER ``"publish
    <type>"`` / ``"send <type>"`` span, a child of the current span (a web request's,
    say, or the handler's when it writes follow-ups to the outbox), whose context is
    injected into its headers; with ``producer_spans=False`` the current context itself
    is injected (nothing, outside any span).

    Args:
        tracer_provider: where spans go; the global provider if None.
        propagator: how the context is written to headers; the global one if None.
        system: the ``messaging.system`` attribute.
        producer_spans: record a span per message, or only inject the current context.
    """

    tracer_provider: trace.TracerProvider | None = None
    propagator: TextMapPropagator | None = None
    system: str = "messagebus"
    producer_spans: bool = True
    _tracer: trace.Tracer = attrs.field(
        init=False,
        default=attrs.Factory(lambda self: tracer_of(self.tracer_provider), takes_self=True),
        repr=False,
    )

    def __call__(self, envelope: Envelope[Message]) -> Envelope[Message]:
        """Return ``envelope`` with a trace context in its headers (see the class)."""
        if has_trace_context(envelope, self.propagator):
            return envelope
        if self.producer_spans:
            return create_span(self._tracer, envelope, self.system, self.propagator)
        return with_trace_context(envelope, None, self.propagator)


inject_trace_context = TraceContextInjector()
"""The hook on the global tracer provider and propagator, with producer spans."""
