"""Extension points: what you implement to extend the bus, and what it hands you.

Application code rarely needs this module; libraries and infrastructure code do.

Middleware (see :mod:`messagebus.middleware` for the ones that ship):

- :data:`Middleware`: ``async def middleware(envelope, call_next) -> result``, and
  :data:`CallNext`, the rest of the chain. Global middleware wraps per-handler
  middleware; within each list the first added is the outermost. Chains are composed
  once, when a handler is registered, never per message.
- :class:`HandlerAwareMiddleware`: a middleware with ``bind(handler)``, called once per
  handler with its :class:`HandlerInfo`, returning the layer for that handler (or None
  for none). :class:`OnFailure` wraps a :data:`Recover` function: a layer that acts only
  when the rest of the chain raises (retries), which the bus skips entirely on success.
- The follow-ups of the run a middleware wraps (the messages its handler held back with
  ``ctx.publish`` / ``ctx.send``, dispatched after the whole chain succeeds):
  :func:`held_follow_ups` reads them, :func:`take_follow_ups` takes them (the bus will
  not dispatch them: a unit of work writes them to its outbox), :func:`discard_follow_ups`
  forgets them (a policy that gives up quietly), :func:`hold_follow_ups` adds envelopes
  (take, then hold changed copies: tracing stamps them).
- :func:`received_from` tells where the message being handled came from (its queue,
  the transport's messaging system, the receive count), as a :class:`Received`; None
  for a message dispatched in-process.
- A middleware that runs the rest of the chain again (a retry) calls
  :func:`enter_attempt` with each new attempt's envelope, so that what is told about
  the run afterwards (log lines, a dead letter) carries that attempt's number.

A middleware that holds something for a while (a lease) reads :func:`time_left`, the
seconds left to the work in progress, which an entry point whose process stops at a
known time (the Lambda entry point) sets for its work with :func:`deadline`.

Transports (see :mod:`messagebus.transports` for the data they exchange, and
:mod:`messagebus.testing` for the conformance checks every one must pass):
:class:`Transport` and :class:`Delivery`; :class:`NamedTransport`, optional, says what the
broker calls a queue or topic (documents of a service show those names).

Stores, each protocol's docstring stating its contract:
:class:`IdempotencyStore` (and :class:`InboxStore` for inbox mode),
:class:`OutboxStore` with its :class:`OutboxTransaction`, :class:`DeadLetterStore`,
:class:`EventLog` with its :class:`CheckpointStore`.

Time: every timed part takes a ``clock=`` (:data:`TimeSource`): a bare reading, or a
:class:`Clock` that also measures its waits (:class:`messagebus.testing.FakeClock` in
tests).
"""

from messagebus._clock import Clock, TimeSource
from messagebus._deadline import deadline, time_left
from messagebus._dispatch._run import (
    discard_follow_ups,
    enter_attempt,
    held_follow_ups,
    hold_follow_ups,
    take_follow_ups,
)
from messagebus._handlers import HandlerInfo
from messagebus._middleware import CallNext, HandlerAwareMiddleware, Middleware, OnFailure, Recover
from messagebus._received import Received, received_from
from messagebus.dead_letters._store import DeadLetterStore
from messagebus.eventlog._store import CheckpointStore, EventLog
from messagebus.idempotency._store import IdempotencyStore, InboxStore
from messagebus.outbox._store import OutboxStore, OutboxTransaction
from messagebus.transports._protocol import Delivery, NamedTransport, Transport

__all__ = [
    "CallNext",
    "CheckpointStore",
    "Clock",
    "DeadLetterStore",
    "Delivery",
    "EventLog",
    "HandlerAwareMiddleware",
    "HandlerInfo",
    "IdempotencyStore",
    "InboxStore",
    "Middleware",
    "NamedTransport",
    "OnFailure",
    "OutboxStore",
    "OutboxTransaction",
    "Received",
    "Recover",
    "TimeSource",
    "Transport",
    "deadline",
    "discard_follow_ups",
    "enter_attempt",
    "held_follow_ups",
    "hold_follow_ups",
    "received_from",
    "take_follow_ups",
    "time_left",
]
