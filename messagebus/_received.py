"""Where the message being handled came from, for code that runs inside its handlers.

A worker (or another entry point that takes messages off a transport) sets it around
:meth:`~messagebus.MessageBus.handle_delivered`; a message dispatched in-process has
none. Tracing reads it for the destination and the messaging system of a process span.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import attrs

__all__ = ["Received", "received_from", "receiving"]


@attrs.frozen
class Received:
    """The delivery a handled message arrived with.

    Attributes:
        queue: the queue it was received from, as the transport names it.
        system: the transport's ``messaging.system`` (``"aws_sqs"``; see
            :class:`~messagebus.transports.Capabilities`).
        receive_count: how many times the transport has delivered it, this one included.
    """

    queue: str
    system: str
    receive_count: int = 1


_current: ContextVar[Received | None] = ContextVar("messagebus_received", default=None)


def received_from() -> Received | None:
    """Return the delivery the message handled in this task arrived with; None in-process."""
    return _current.get()


@contextmanager
def receiving(received: Received) -> Iterator[None]:
    """Make ``received`` what :func:`received_from` returns inside the block (and its tasks)."""
    token = _current.set(received)
    try:
        yield
    finally:
        _current.reset(token)
