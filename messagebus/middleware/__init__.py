"""Middleware that ships with messagebus; each policy lives in its own module."""

from messagebus._middleware import CallNext, HandlerAwareMiddleware, Middleware
from messagebus.middleware._logging import LoggingMiddleware

__all__ = ["CallNext", "HandlerAwareMiddleware", "LoggingMiddleware", "Middleware"]
