"""Scheduled messages: outbox rows with a due time, delivered by the relay when due.

``await bus.schedule(message, delay=...)``, ``ctx.schedule(...)`` in a handler and
``uow.schedule(...)`` in a unit of work put a message in the outbox with a due time
(this module: the rules; :mod:`messagebus._scheduled`: the bus's calls). Contract:

- Exactly one of ``at`` (an aware :class:`~datetime.datetime`) and ``delay`` (a
  :class:`~datetime.timedelta` or seconds, >= 0). ``delay`` counts from the call, on
  the outbox store's clock (:attr:`SchedulingStore.clock
  <messagebus.outbox.SchedulingStore.clock>`, so a fake clock given to the store rules
  scheduling too). A time in the past is due now.
- The id returned (:data:`ScheduleId`) is the message id of the scheduled envelope;
  :meth:`MessageBus.cancel_scheduled <messagebus.MessageBus.cancel_scheduled>` takes
  it.
- Inside a unit of work (the caller's, or the handler's under ``UnitOfWorkMiddleware``)
  the row is written in its transaction: it commits or rolls back with the caller's
  writes. ``ctx.schedule`` outside one holds the message back like ``ctx.publish``
  (discarded if the handler fails) and writes it in a transaction of its own after the
  handler succeeded; ``bus.schedule`` outside one writes it at once, in its own.
- The relay delivers the row once it is due (on any relay, after any restart: it is a
  committed row), as it delivers every row: at least once, to the message's usual
  destination (a queue, a topic, or this process's handlers without a transport).
- The due time travels with the envelope in the header :data:`DUE_HEADER` (seconds
  since the Unix epoch, exactly as stored), so middleware that copies envelopes keeps
  it, and the receiving handler can read when the message was due. The name is
  reserved: a message published with it is scheduled.

Decisions (see the README): a bus without an outbox refuses to schedule
(:class:`~messagebus.ConfigurationError`) rather than fall back on a transport's own
delay: that would be lost on a crash before the send, could not be cancelled, depends
on the delay's length (SQS: 15 minutes at most, none on FIFO queues) and cannot follow
a fake clock. For the same reasons an outbox never hands a message to the transport
early with a delay: a row waits in the outbox until due, cancellable all along. A bus
with an event log refuses to schedule events: the log would record them as published at
scheduling time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NewType

from messagebus._envelope import Envelope
from messagebus._errors import ArgumentTypeError, ConfigurationError, InvalidArgumentError
from messagebus._messages import Event, Message
from messagebus.outbox._store import SchedulingStore

if TYPE_CHECKING:
    from messagebus.extension import OutboxStore

__all__ = [
    "DUE_HEADER",
    "ScheduleId",
    "Scheduling",
    "due_of",
    "due_time",
    "require",
]

ScheduleId = NewType("ScheduleId", str)
"""The id of a scheduled message (its envelope's ``message_id``), for cancelling it."""

DUE_HEADER = "messagebus-due-at"
"""The header holding a scheduled envelope's due time (``repr`` of epoch seconds)."""


def due_time(now: float, at: datetime | None, delay: timedelta | float | None) -> float:
    """Return the due time (seconds since the Unix epoch) of ``at`` or ``now + delay``.

    Raises:
        InvalidArgumentError: both or neither given; ``at`` naive; ``delay`` negative or
            not finite.
        ArgumentTypeError: ``at`` not a datetime, ``delay`` not a timedelta or number.
    """
    if (at is None) == (delay is None):
        raise InvalidArgumentError("schedule() takes exactly one of at= and delay=")
    if at is not None:
        if not isinstance(at, datetime):
            raise ArgumentTypeError(f"at= takes a datetime, not {at!r}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidArgumentError(
                f"at= must be an aware datetime (with a time zone), not the naive {at!r}"
            )
        return at.timestamp()
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise ArgumentTypeError(f"delay= takes a timedelta or seconds, not {delay!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgumentError(f"delay= must be finite and >= 0 seconds, not {delay!r}")
    return now + seconds


def due_of(envelope: Envelope[Message]) -> float | None:
    """Return the due time of a scheduled envelope, None for any other.

    Raises:
        InvalidArgumentError: the :data:`DUE_HEADER` is there but not a number.
    """
    text = envelope.headers.get(DUE_HEADER)
    if text is None:
        return None
    try:
        due = float(text)
    except ValueError:
        raise InvalidArgumentError(f"header {DUE_HEADER} must be epoch seconds: {text!r}") from None
    if not math.isfinite(due):
        raise InvalidArgumentError(f"header {DUE_HEADER} must be finite: {text!r}")
    return due


class Scheduling:
    """What a bus that can schedule knows: its outbox's clock, whether events may be.

    Args:
        store: the bus's outbox store.
        events: events may be scheduled (False on a bus with an event log).
    """

    def __init__(self, store: SchedulingStore, *, events: bool) -> None:
        self.store = store
        self._events = events

    @classmethod
    def of(cls, store: OutboxStore | None, *, events: bool) -> Scheduling | None:
        """Return the scheduling of a bus on ``store``; None if it cannot schedule."""
        return cls(store, events=events) if isinstance(store, SchedulingStore) else None

    def headers(
        self,
        message: Message,
        at: datetime | None,
        delay: timedelta | float | None,
        headers: Mapping[str, str] | None,
    ) -> dict[str, str]:
        """Return ``headers`` with the due time of ``message`` added.

        Raises:
            ConfigurationError: ``message`` is an event and the bus has an event log.
            InvalidArgumentError, ArgumentTypeError: see :func:`due_time`.
        """
        if not self._events and isinstance(message, Event):
            raise ConfigurationError(
                f"cannot schedule the event {type(message).__qualname__} on a bus with an "
                "event log: the log would record it as published now; schedule a command "
                "whose handler publishes it"
            )
        due = due_time(self.store.clock(), at, delay)
        return {**(headers or {}), DUE_HEADER: repr(due)}


def require(scheduling: Scheduling | None) -> Scheduling:
    """Return ``scheduling``, or raise :class:`ConfigurationError` for a bus without one."""
    if scheduling is None:
        raise ConfigurationError(
            "this bus cannot schedule messages: scheduled messages wait in the outbox, so "
            "pass outbox= to MessageBus (an SQLite or PostgreSQL outbox); see the README"
        )
    return scheduling
