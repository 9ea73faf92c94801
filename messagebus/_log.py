"""Where the library's own log lines go: the application's structlog, else ``logging``.

A library must not decide where its logs go. Contract of :func:`get_logger`:

- When the application has configured structlog (:func:`structlog.is_configured`: it
  called ``structlog.configure``), the library's lines (retrying, dead-lettered, relay
  failures, ...) go through ``structlog.get_logger(name)``: its processors, its
  renderer, its level filter.
- Otherwise they go through the standard :mod:`logging` logger of the same name
  (``messagebus``, ``messagebus.worker``, ...), so the application's handlers, levels
  and filters apply. A record's message is the event followed by its fields as
  ``key=value``; the fields are also the record's attributes (those that do not clash
  with :class:`logging.LogRecord`'s own), and an exception goes as ``exc_info``, for
  the application's formatter to print. With ``logging`` unconfigured, Python's
  last-resort handler prints warnings and errors to stderr, and nothing else.
- The library calls neither ``structlog.configure`` nor ``logging.basicConfig``.
- The choice is made each time a line is logged, or when the logger is bound
  (``bind()`` returns the logger chosen then): a logger made at import time follows a
  configuration made later, before the line.

A logger given explicitly (the ``logger=`` arguments) is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog
import structlog.stdlib
from structlog.typing import Processor

__all__ = ["LibraryLogger", "get_logger"]

# Attributes a LogRecord has already: a field with one of these names stays in the
# message only (logging refuses to overwrite them through ``extra``).
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _to_logging(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[str], dict[str, Any]]:
    """Render ``event_dict`` as the arguments of a :class:`logging.Logger` call."""
    event = str(event_dict.pop("event", ""))
    exc_info = event_dict.pop("exc_info", None)
    fields = " ".join(f"{key}={_value(value)}" for key, value in event_dict.items())
    extra = {key: value for key, value in event_dict.items() if key not in _RECORD_ATTRIBUTES}
    kwargs: dict[str, Any] = {"extra": extra}
    if exc_info:
        kwargs["exc_info"] = exc_info
    return (f"{event} {fields}" if fields else event,), kwargs


def _value(value: object) -> str:
    # Plain words stay bare; anything with spaces or quotes is quoted, so that a line
    # still splits into its fields.
    if isinstance(value, str) and value and not any(c.isspace() or c in "'\"=" for c in value):
        return value
    return repr(value)


_TO_LOGGING: list[Processor] = [structlog.stdlib.filter_by_level, _to_logging]


class LibraryLogger:
    """A library logger whose destination is chosen when it logs; see the module.

    Under :mod:`logging`, a line below the logger's level is dropped before anything is
    built. Under structlog, each line asks ``structlog.get_logger(name)`` afresh, so a
    later configuration (``capture_logs`` in a test included) is always followed; a
    proxy kept per logger would freeze the configuration of its first line whenever the
    application caches loggers (``cache_logger_on_first_use``).
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _chosen(self, level: int | None = None) -> Any:
        """Return the logger a line goes to now; None if logging drops a line at ``level``."""
        if structlog.is_configured():
            return structlog.get_logger(self.name)
        logger = logging.getLogger(self.name)
        if level is not None and not logger.isEnabledFor(level):
            return None
        return structlog.stdlib.BoundLogger(logger, _TO_LOGGING, {})

    def bind(self, **values: Any) -> Any:
        """Return the logger chosen now, with ``values`` bound (kept: choose no more)."""
        return self._chosen().bind(**values)

    def debug(self, event: str, **values: Any) -> None:
        """Log ``event`` at debug."""
        logger = self._chosen(logging.DEBUG)
        if logger is not None:
            logger.debug(event, **values)

    def info(self, event: str, **values: Any) -> None:
        """Log ``event`` at info."""
        logger = self._chosen(logging.INFO)
        if logger is not None:
            logger.info(event, **values)

    def warning(self, event: str, **values: Any) -> None:
        """Log ``event`` at warning."""
        logger = self._chosen(logging.WARNING)
        if logger is not None:
            logger.warning(event, **values)

    def error(self, event: str, **values: Any) -> None:
        """Log ``event`` at error."""
        logger = self._chosen(logging.ERROR)
        if logger is not None:
            logger.error(event, **values)

    def exception(self, event: str, **values: Any) -> None:
        """Log ``event`` at error with the exception being handled."""
        logger = self._chosen(logging.ERROR)
        if logger is not None:
            logger.exception(event, **values)


def get_logger(name: str = "messagebus") -> LibraryLogger:
    """Return the library's logger called ``name``; see the module for where it writes."""
    return LibraryLogger(name)
