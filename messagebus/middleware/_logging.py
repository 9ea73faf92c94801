"""Structured logging of every handler run, through structlog."""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

import anyio
import attrs
import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars

from messagebus._envelope import Envelope
from messagebus._errors import CommandRejected
from messagebus._handlers import HandlerInfo
from messagebus._messages import Message
from messagebus._middleware import CallNext, Middleware

__all__ = ["LoggingMiddleware"]


@attrs.frozen
class LoggingMiddleware:
    """Logs the outcome and duration of each handler run, with the message's ids.

    One line per run: ``"message handled"`` (info), ``"command rejected"`` (info, with
    the reason), ``"handler failed"`` (error, with the traceback) or ``"handler
    cancelled"`` (warning). Each line carries ``message_id``, ``correlation_id``,
    ``causation_id``, ``message_type``, ``handler``, ``attempt`` and ``duration_ms``.

    While the handler runs, the same ids are bound with
    :func:`structlog.contextvars.bind_contextvars`, so the handler's own log lines carry
    them too under any structlog configuration that has
    :func:`structlog.contextvars.merge_contextvars` (structlog's default does). Turn
    that off with ``bind_contextvars=False`` to save its cost per run.

    The middleware never configures structlog: log levels, rendering and output are the
    application's choice. Place it first (outermost) to time and log everything inside.

    Args:
        logger: the structlog logger to use; ``structlog.get_logger("messagebus")`` if None.
        bind_contextvars: bind the ids into structlog's context variables during the run.
    """

    logger: Any = None
    bind_contextvars: bool = True

    def bind(self, handler: HandlerInfo) -> Middleware:
        """Return this middleware specialised for ``handler``."""
        log = structlog.get_logger("messagebus") if self.logger is None else self.logger
        name = handler.name
        bind = self.bind_contextvars

        async def log_handler_run(envelope: Envelope[Message], call_next: CallNext) -> Any:
            fields = {
                "message_type": envelope.message_type,
                "message_id": envelope.message_id,
                "correlation_id": envelope.correlation_id,
                "causation_id": envelope.causation_id,
                "handler": name,
                "attempt": envelope.attempt,
            }
            tokens = bind_contextvars(**fields) if bind else None
            started = perf_counter_ns()
            try:
                result = await call_next(envelope)
            except CommandRejected as exc:
                log.info("command rejected", reason=exc.reason, **fields, **_took(started))
                raise
            except Exception:
                log.error("handler failed", exc_info=True, **fields, **_took(started))
                raise
            except anyio.get_cancelled_exc_class():
                log.warning("handler cancelled", **fields, **_took(started))
                raise
            else:
                log.info("message handled", **fields, **_took(started))
                return result
            finally:
                if tokens is not None:
                    reset_contextvars(**tokens)

        return log_handler_run

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Not used directly: the bus calls :meth:`bind` for each handler."""
        raise TypeError("LoggingMiddleware is bound per handler by the bus; do not call it")


def _took(started: int) -> dict[str, float]:
    return {"duration_ms": round((perf_counter_ns() - started) / 1_000_000, 3)}
