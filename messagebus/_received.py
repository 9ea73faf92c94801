"""Where the message being handled came from, for code that runs inside its handlers.

A worker (or another entry point that takes messages off a transport) sets it around
:meth:`~messagebus.MessageBus.handle_delivered`; a message dispatched in-process has
none. Tracing reads it for the destination and the messaging system of a process span.
"""

from __future__ import annotations

from contextvars import ContextVar

import attrs

__all__ = ["Received", "received_from", "receiving"]


@attrs.frozen
class Received:
    """The delivery a handled message arrived with.

    Attributes:
        queue: the queue it was received from, by the broker's name of it where the
            transport says it (:class:`~messagebus.extension.NamedTransport`), else
            by its logical name.
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


class receiving:  # used as a function: ``with receiving(received):``
    """Make ``received`` what :func:`received_from` returns inside the block (and its tasks).

    A class rather than a generator function: it is entered once per delivery, and a
    generator's context manager costs several times as much (benchmarks/lambda_entry.py).
    """

    __slots__ = ("_received", "_token")

    def __init__(self, received: Received) -> None:
        self._received = received

    def __enter__(self) -> None:
        self._token = _current.set(self._received)

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)
