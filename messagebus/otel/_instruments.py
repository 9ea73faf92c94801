"""The instrumentation scope's version, and the messaging conventions' metric instruments."""

from __future__ import annotations

from opentelemetry import metrics

from messagebus._version import __version__

__all__ = [
    "DURATION_BUCKETS",
    "client_operation_duration",
    "consumed_messages",
    "package_version",
    "process_duration",
    "sent_messages",
]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The explicit bucket boundaries the messaging conventions advise for durations (s)."""


def package_version() -> str:
    """Return the installed version of messagebus (``messagebus.__version__``)."""
    return __version__


def _meter(meter_provider: metrics.MeterProvider | None) -> metrics.Meter:
    return metrics.get_meter("messagebus", package_version(), meter_provider=meter_provider)


def process_duration(meter_provider: metrics.MeterProvider | None) -> metrics.Histogram:
    """Make the ``messaging.process.duration`` histogram (seconds per handler run)."""
    return _meter(meter_provider).create_histogram(
        "messaging.process.duration",
        unit="s",
        description="Duration of processing operation.",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )


def client_operation_duration(meter_provider: metrics.MeterProvider | None) -> metrics.Histogram:
    """Make the ``messaging.client.operation.duration`` histogram (send, receive, settle)."""
    return _meter(meter_provider).create_histogram(
        "messaging.client.operation.duration",
        unit="s",
        description="Duration of messaging operation initiated by a producer or consumer client.",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )


def sent_messages(meter_provider: metrics.MeterProvider | None) -> metrics.Counter:
    """Make the ``messaging.client.sent.messages`` counter."""
    return _meter(meter_provider).create_counter(
        "messaging.client.sent.messages",
        unit="{message}",
        description="Number of messages producer attempted to send to the broker.",
    )


def consumed_messages(meter_provider: metrics.MeterProvider | None) -> metrics.Counter:
    """Make the ``messaging.client.consumed.messages`` counter."""
    return _meter(meter_provider).create_counter(
        "messaging.client.consumed.messages",
        unit="{message}",
        description="Number of messages that were delivered to the application.",
    )
