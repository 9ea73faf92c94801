"""OpenTelemetry for messagebus: a span per handler run, trace context across transports.

Needs the ``otel`` extra (``pip install 'anyio-messagebus[otel]'``, the OpenTelemetry API);
``import messagebus`` never imports OpenTelemetry, only ``import messagebus.otel`` does.

- :class:`TracingMiddleware`: a CONSUMER span ``"process <destination>"`` per handler
  run, linked to the message's creation context (and by default its child); follow-ups
  it holds get PRODUCER create spans and carry their context on; the
  ``messaging.process.duration`` histogram.
- :class:`TracedTransport`: a transport wrapper with the client spans (``send``,
  ``publish``, ``receive``, ``ack`` / ``nack`` settle), each linked to the creation
  contexts of the messages it carries, and the client metrics
  (``messaging.client.operation.duration``, ``messaging.client.sent.messages``,
  ``messaging.client.consumed.messages``).
- :data:`inject_trace_context` (:class:`TraceContextInjector`): an ``outgoing`` hook of
  the bus that gives every message leaving the process without a trace context one (a
  PRODUCER create span, child of the current span).
- :func:`observe_counters`: :class:`messagebus.metrics.Counters` as observable counters.
- :func:`add_trace_context`: a structlog processor putting the current trace and span
  ids in log lines.

Attributes follow OpenTelemetry's messaging semantic conventions:

- ``messaging.system``: the transport's (``aws_sqs`` for SQS queues, ``aws_sns`` for
  SNS topics, ``aws_eventbridge`` for EventBridge, ``messagebus_memory`` in memory), and
  ``messagebus`` for a message dispatched in-process; a configured value wins.
- ``messaging.destination.name``: the broker's name of the queue or topic where the
  transport says it (:class:`~messagebus.extension.NamedTransport`: on SQS
  ``<prefix><name>`` and ``.fifo``, on EventBridge the bus), else its logical name;
  in Lambda, the queue or topic of the record's ARN; for a message dispatched
  in-process, the message type's wire name (the bus is then the intermediary). Span
  names are ``<operation name> <destination>``.
- ``messaging.operation.type`` (``create``, ``send``, ``receive``, ``process``,
  ``settle``) and ``messaging.operation.name`` (``publish``, ``send``, ``receive``,
  ``process``, ``ack``, ``nack``); ``messaging.batch.message_count`` on batch calls.
- ``messaging.destination.subscription.name`` (the subscriber, for events),
  ``messaging.message.id``, ``messaging.message.conversation_id`` (the correlation id).
- The CloudEvents attributes of a processed message: ``cloudevents.event_id``,
  ``cloudevents.event_type``, ``cloudevents.event_spec_version``.
- ``error.type``: the exception class's fully qualified name
  (``messagebus._errors.SendError``; builtins bare, ``ValueError``).
- messagebus's own ``messagebus.handler``, ``messagebus.message.kind``,
  ``messagebus.attempt`` and ``messagebus.outcome`` (processed, rejected, failed,
  cancelled).

The instrumentation scope is ``messagebus`` at the installed package's version.
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
from messagebus.otel._transport import TracedTransport

__all__ = [
    "TraceContextInjector",
    "TracedTransport",
    "TracingMiddleware",
    "add_trace_context",
    "carried_context",
    "inject_trace_context",
    "observe_counters",
    "with_trace_context",
]
