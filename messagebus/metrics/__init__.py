"""Counters of handler runs and dead letters, per handler, readable in process.

No dependency: the counts live in a :class:`Counters` object you read (and may export
with :func:`messagebus.otel.observe_counters`). What is counted where is stated in
:mod:`messagebus.metrics._counters`.
"""

from messagebus.metrics._counters import Counters, HandlerCounts
from messagebus.metrics._dead_letters import CountingDeadLetterStore
from messagebus.metrics._middleware import MetricsMiddleware

__all__ = ["Counters", "CountingDeadLetterStore", "HandlerCounts", "MetricsMiddleware"]
