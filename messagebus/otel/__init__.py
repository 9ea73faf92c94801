"""OpenTelemetry for messagebus: a span per handler run, trace context across transports.

Needs the ``otel`` extra (``pip install 'anyio-messagebus[otel]'``, the OpenTelemetry API);
``import messagebus`` never imports OpenTelemetry, only ``import messagebus.otel`` does.

- :class:`TracingMiddleware`: a CONSUMER span ``"process <message type>"`` per handler
  run, the child of the trace context in the envelope's headers; follow-ups it holds
  get PRODUCER spans and carry their context on.
- :data:`inject_trace_context` (:class:`TraceContextInjector`): an ``outgoing`` hook of
  the bus that gives every message leaving the process without a trace context one (a
  PRODUCER span, child of the current span).
- :func:`observe_counters`: :class:`messagebus.metrics.Counters` as observable counters.
- :func:`add_trace_context`: a structlog processor putting the current trace and span
  ids in log lines.

Attributes follow the OpenTelemetry messaging conventions: ``messaging.system``
(``"messagebus"`` unless configured), ``messaging.operation.type`` (``process`` for
handler runs, ``create`` for producer spans), ``messaging.operation.name``
(``process``, ``publish``, ``send``), ``messaging.destination.name`` (the message type's
wire name: the bus's logical destination, from which transports name topics),
``messaging.destination.subscription.name`` (the subscriber, for events),
``messaging.message.id`` and ``messaging.message.conversation_id`` (the correlation
id); and messagebus's own ``messagebus.handler``, ``messagebus.message.kind``,
``messagebus.attempt`` and ``messagebus.outcome`` (processed, rejected, failed,
cancelled).
"""

try:
    import opentelemetry.trace  # noqa: F401  # fail here, with the remedy, not deep inside
except ImportError as exc:  # pragma: no cover - the message is tested with a stand-in
    raise ImportError(
        "messagebus.otel needs OpenTelemetry: pip install 'anyio-messagebus[otel]'"
    ) from exc

from messagebus.otel._inject import TraceContextInjector, inject_trace_context
from messagebus.otel._logging import add_trace_context
from messagebus.otel._metrics import observe_counters
from messagebus.otel._propagation import carried_context, with_trace_context
from messagebus.otel._tracing import TracingMiddleware

__all__ = [
    "TraceContextInjector",
    "TracingMiddleware",
    "add_trace_context",
    "carried_context",
    "inject_trace_context",
    "observe_counters",
    "with_trace_context",
]
