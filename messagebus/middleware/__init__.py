"""Middleware that ships with messagebus; each policy lives in its own module."""

from messagebus.middleware._idempotency import IdempotencyMiddleware, default_key
from messagebus.middleware._logging import LoggingMiddleware
from messagebus.middleware._ordering import OrderingMiddleware
from messagebus.middleware._retry import DEFAULT_EVENT_POLICY, RetryMiddleware
from messagebus.middleware._unit_of_work import UnitOfWorkMiddleware

__all__ = [
    "DEFAULT_EVENT_POLICY",
    "IdempotencyMiddleware",
    "LoggingMiddleware",
    "OrderingMiddleware",
    "RetryMiddleware",
    "UnitOfWorkMiddleware",
    "default_key",
]
