"""Exporting :class:`~messagebus.metrics.Counters` through the OpenTelemetry metrics API."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from messagebus.metrics import Counters, HandlerCounts

__all__ = ["observe_counters"]

_COUNTS: tuple[tuple[str, str, str], ...] = (
    ("processed", "{run}", "Handler runs that returned."),
    ("rejected", "{run}", "Command handler runs that raised CommandRejected."),
    ("failed", "{run}", "Handler runs that raised an exception."),
    ("cancelled", "{run}", "Handler runs that were cancelled."),
    ("retried", "{run}", "Handler runs of an attempt after the first."),
    ("dead_lettered", "{message}", "Dead letters recorded."),
)


def observe_counters(
    counters: Counters,
    meter_provider: metrics.MeterProvider | None = None,
    *,
    prefix: str = "messagebus.handler",
) -> None:
    """Publish ``counters`` as OpenTelemetry observable counters, read at each collection.

    One instrument per count, ``<prefix>.processed`` ... ``<prefix>.dead_lettered``,
    and ``<prefix>.duration`` (seconds, all runs), each observed per handler with the
    attribute ``messagebus.handler``. The counts stay in ``counters`` (the one source
    of truth); the meter only reads them, so nothing is added to a handler run.

    Args:
        counters: the counts to export (those of a MetricsMiddleware and a
            CountingDeadLetterStore).
        meter_provider: where the instruments are made; the global provider if None.
        prefix: the instruments' name prefix.
    """
    meter = metrics.get_meter("messagebus", meter_provider=meter_provider)
    for field, unit, description in _COUNTS:
        meter.create_observable_counter(
            f"{prefix}.{field}",
            callbacks=[_observe(counters, attrgetter(field))],
            unit=unit,
            description=description,
        )
    meter.create_observable_counter(
        f"{prefix}.duration",
        callbacks=[_observe(counters, attrgetter("seconds"))],
        unit="s",
        description="Time spent in handler runs, all outcomes.",
    )


def _observe(
    counters: Counters, read: Callable[[HandlerCounts], float]
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(read(counts), {"messagebus.handler": name})
            for name, counts in counters.items()
        ]

    return observe
