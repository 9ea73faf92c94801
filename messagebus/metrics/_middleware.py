"""Counting handler runs: the middleware half of :mod:`messagebus.metrics`."""

from __future__ import annotations

from time import perf_counter
from typing import Any

import anyio
import attrs

from messagebus._envelope import Envelope
from messagebus._errors import ArgumentTypeError, CommandRejected
from messagebus._handlers import HandlerInfo
from messagebus._messages import Message
from messagebus._middleware import CallNext, Middleware
from messagebus.metrics._counters import Counters

__all__ = ["MetricsMiddleware"]


@attrs.frozen
class MetricsMiddleware:
    """Counts each handler run in ``counters``; see :mod:`messagebus.metrics._counters`.

    Args:
        counters: where the counts go; read them there.
    """

    counters: Counters = attrs.field(factory=Counters)

    def bind(self, handler: HandlerInfo) -> Middleware:
        """Return this middleware specialised for ``handler`` (its counts looked up once)."""
        counts = self.counters.of(handler.name)

        async def count_handler_run(envelope: Envelope[Message], call_next: CallNext) -> Any:
            if envelope.attempt > 1:
                counts.retried += 1
            started = perf_counter()
            try:
                result = await call_next(envelope)
            except CommandRejected:
                counts.rejected += 1
                raise
            except Exception:
                counts.failed += 1
                raise
            except anyio.get_cancelled_exc_class():
                counts.cancelled += 1
                raise
            finally:
                counts.seconds += perf_counter() - started
            counts.processed += 1
            return result

        return count_handler_run

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Not used directly: the bus calls :meth:`bind` for each handler."""
        raise ArgumentTypeError("MetricsMiddleware is bound per handler by the bus; do not call it")
