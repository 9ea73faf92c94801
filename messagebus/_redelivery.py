"""Retries that wait in the queue instead of in a worker slot.

A message that arrived through a transport is handled inside :func:`collecting`. When
a retry policy asks for a delay longer than the retry middleware's
``max_inline_delay``, the middleware does not sleep: it calls :func:`defer`, which
records a :class:`Redelivery` (the handler, the envelope with its next attempt number,
the delay) and ends that handler's run. The worker then puts a copy of the message back
on its own queue with that delay, marked with :data:`HANDLER_HEADER` so that only the
handler that failed runs again (the other subscribers of an event succeeded), and acks
the original. Our own attempt counter travels in the copy's envelope, exactly.

Outside :func:`collecting` (a ``send`` whose caller waits, an in-process publish),
:func:`defer` refuses and the middleware waits in-process as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

import attrs

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus.transports._protocol import Transport
from messagebus.transports._routing import outgoing

__all__ = ["HANDLER_HEADER", "Redelivery", "collecting", "defer", "send_copies"]

HANDLER_HEADER = "messagebus-handler"
"""Header naming the one handler a redelivered copy is for."""


@attrs.frozen
class Redelivery:
    """Run ``handler`` on ``envelope`` again after ``delay`` seconds, from the queue."""

    handler: str
    envelope: Envelope[Message]
    delay: float


_requests: ContextVar[list[Redelivery] | None] = ContextVar("messagebus.redeliveries", default=None)


class collecting:  # used as a function: ``with collecting() as requests``
    """Collect the redeliveries that handler runs in this block ask for.

    ``with collecting() as requests:`` gives the list they are appended to.
    ``enabled=False`` refuses them (a queue that cannot delay a message, such as an
    SQS FIFO queue): the retry middleware then waits in-process.

    A class rather than a generator function: it is entered once per delivery, and a
    generator's context manager costs several times as much (benchmarks/lambda_entry.py).
    """

    __slots__ = ("_enabled", "_requests", "_token")

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._requests: list[Redelivery] = []

    def __enter__(self) -> list[Redelivery]:
        requests = self._requests
        self._token = _requests.set(requests if self._enabled else None)
        return requests

    def __exit__(self, *exc_info: object) -> None:
        _requests.reset(self._token)


def defer(handler: str, envelope: Envelope[Message], delay: float) -> bool:
    """Ask for a redelivery from the queue; False when the message came from none."""
    requests = _requests.get()
    if requests is None:
        return False
    requests.append(Redelivery(handler, envelope, delay))
    return True


async def send_copies(
    transport: Transport, codec: WireCodec, queue: str, redeliveries: Sequence[Redelivery]
) -> None:
    """Put a delayed copy of each redelivery on ``queue``, marked for its handler only.

    What the worker and the Lambda entry point do with what :func:`collecting` gathered.
    A delay over the transport's ``max_delay`` is cut to it (the policy decides again
    when the copy fails).
    """
    limit = transport.capabilities.max_delay
    copies = []
    for redelivery in redeliveries:
        envelope = redelivery.envelope
        marked = envelope.replace(headers={**envelope.headers, HANDLER_HEADER: redelivery.handler})
        copies.append(attrs.evolve(outgoing(codec, marked), delay=min(redelivery.delay, limit)))
    await transport.send(queue, copies)
