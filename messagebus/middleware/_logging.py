"""Structured logging of every handler run, through the library's logger."""

from __future__ import annotations

import logging
from time import perf_counter_ns
from typing import Any

import anyio
import attrs
from structlog.contextvars import bind_contextvars, reset_contextvars

from messagebus._dispatch._run import latest_attempt
from messagebus._envelope import Envelope
from messagebus._errors import ArgumentTypeError, CommandRejected
from messagebus._handlers import HandlerInfo
from messagebus._log import get_logger
from messagebus._messages import Message
from messagebus._middleware import CallNext, Middleware

__all__ = ["LoggingMiddleware"]


@attrs.frozen
class LoggingMiddleware:
    """Logs the outcome and duration of each handler run, with the message's ids.

    One line per run: ``"message handled"`` (info), ``"command rejected"`` (info, with
    the reason), ``"handler failed"`` (error, with the traceback) or ``"handler
    cancelled"`` (warning). Each line carries ``message_id``, ``correlation_id``,
    ``causation_id``, ``message_type``, ``handler``, ``attempt`` (the attempt the run
    ended on, when a retry layer inside ran it again) and ``duration_ms``.

    For the handler's *own* log lines to carry the ids too, add the processor
    :func:`messagebus.add_message_context` to your structlog configuration (it costs
    nothing per dispatch), or set ``bind_contextvars=True`` to bind the ids with
    :func:`structlog.contextvars.bind_contextvars` during every run (works with
    structlog's default configuration, but binding six context variables costs more
    than the rest of a dispatch put together).

    The logger is resolved (``logger.bind()``) on each handler's first run and kept,
    the way structlog's ``cache_logger_on_first_use`` does: configure logging (structlog
    or the standard library) before messages move. When the resolved logger filters
    out info (structlog's filtering loggers, stdlib loggers), a successful run builds
    no log line at all, so no ids are made for it. The middleware configures no
    logging. Place it first
    (outermost) to time and log everything inside.

    Args:
        logger: the logger to use; if None, the library's (structlog when the application
            configured it, else the standard logger ``messagebus``).
        bind_contextvars: bind the ids into structlog's context variables during the run.
    """

    logger: Any = None
    bind_contextvars: bool = False

    def bind(self, handler: HandlerInfo) -> Middleware:
        """Return this middleware specialised for ``handler``."""
        name = handler.name
        bind = self.bind_contextvars
        resolved: list[tuple[Any, bool]] = []  # (logger, logs info), set on the first run

        def resolve() -> tuple[Any, bool]:
            source = get_logger("messagebus") if self.logger is None else self.logger
            log = source.bind()
            resolved.append((log, _logs_info(log)))
            return resolved[0]

        async def log_handler_run(envelope: Envelope[Message], call_next: CallNext) -> Any:
            log, logs_info = resolved[0] if resolved else resolve()
            tokens = bind_contextvars(**_fields(envelope, name)) if bind else None
            started = perf_counter_ns()
            try:
                result = await call_next(envelope)
            except CommandRejected as exc:
                if logs_info:
                    log.info(
                        "command rejected",
                        reason=exc.reason,
                        **_fields(envelope, name),
                        **_took(started),
                    )
                raise
            except Exception:
                log.error(
                    "handler failed", exc_info=True, **_fields(envelope, name), **_took(started)
                )
                raise
            except anyio.get_cancelled_exc_class():
                log.warning("handler cancelled", **_fields(envelope, name), **_took(started))
                raise
            finally:
                if tokens is not None:
                    reset_contextvars(**tokens)
            if logs_info:
                log.info("message handled", **_fields(envelope, name), **_took(started))
            return result

        return log_handler_run

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Not used directly: the bus calls :meth:`bind` for each handler."""
        raise ArgumentTypeError("LoggingMiddleware is bound per handler by the bus; do not call it")


def _logs_info(log: Any) -> bool:
    """Tell whether ``log`` writes info lines; True when it cannot say."""
    for check in ("is_enabled_for", "isEnabledFor"):
        method = getattr(log, check, None)
        if method is not None:
            return bool(method(logging.INFO))
    return True


def _fields(envelope: Envelope[Message], handler: str) -> dict[str, Any]:
    return {
        "message_type": envelope.message_type,
        "message_id": envelope.message_id,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "handler": handler,
        # A retry layer inside may have run more attempts than this envelope tells.
        "attempt": latest_attempt(envelope),
    }


def _took(started: int) -> dict[str, float]:
    return {"duration_ms": round((perf_counter_ns() - started) / 1_000_000, 3)}
