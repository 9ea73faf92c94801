"""Trace ids in log lines: a structlog processor."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace

__all__ = ["add_trace_context"]


def add_trace_context(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the current span's ``trace_id`` and ``span_id`` (hex) to a structlog event dict.

    Add it to your structlog ``processors`` beside :func:`messagebus.add_message_context`:
    a line logged in a handler traced by :class:`~messagebus.otel.TracingMiddleware` then
    names its span, so logs and traces join up. Outside any span it adds nothing; keys
    already in the line win.
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", f"{context.trace_id:032x}")
        event_dict.setdefault("span_id", f"{context.span_id:016x}")
    return event_dict
