"""The handler run in progress, and what code around a handler may ask of it.

While the bus dispatches a message, a context variable points at its :data:`Run`: the
message, the run of the message being handled when this one was dispatched (its cause),
the envelope (made on first need), the handler context of the attempt in progress and
the handler. Anything that dispatches from inside (``ctx.publish``, a direct
``bus.send``, a middleware) reads it to link the new message to its cause: the new
envelope inherits ``correlation_id`` and gets ``causation_id`` = the handled message's
id. Context variables follow tasks, so this holds for tasks the handler starts too.

Only the dispatch package (this module and the dispatcher) knows a run's layout;
everything else goes through the functions here. The public ones are the follow-up API
for middleware (:func:`held_follow_ups`, :func:`take_follow_ups`,
:func:`discard_follow_ups`, :func:`hold_follow_ups`): the messages a handler run held
back with ``ctx.publish`` / ``ctx.send`` are dispatched by the bus after the whole chain
around the handler succeeded, unless a middleware took them (a unit of work writes them
to the outbox), discarded them (a retry policy gave up quietly) or replaced them
(tracing stamps them).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from messagebus._envelope import Envelope, lazy_envelope
from messagebus._errors import BusStateError
from messagebus._messages import Message

if TYPE_CHECKING:
    from messagebus._context import Context
    from messagebus._handlers import HandlerInfo

__all__ = [
    "CONTEXT",
    "ENVELOPE",
    "HANDLER",
    "MESSAGE",
    "PARENT",
    "Run",
    "add_message_context",
    "current_envelope",
    "current_run",
    "discard_follow_ups",
    "enter_attempt",
    "envelope_of",
    "held_follow_ups",
    "hold_follow_ups",
    "last_envelope",
    "latest_attempt",
    "take_follow_ups",
]


Run = list[Any]
"""One dispatch of one message: ``[message, parent, envelope, context, handler]``.

- ``message``: the Command or Event;
- ``parent``: the run of the message being handled when this one was dispatched;
- ``envelope``: the envelope, None until something needs it (see :func:`envelope_of`);
- ``context``: the handler context of the attempt in progress, if the handler takes one;
- ``handler``: the :class:`~messagebus.extension.HandlerInfo` running on it (None between the
  subscribers of an event).

A sixth field appears only when a retry starts another attempt (:func:`enter_attempt`):
``(handler, envelope)``, the attempt's envelope and the handler it is for (the
subscribers of an event share a run, one after the other).

A list, not a slotted class: one is made per dispatched message, and a list literal
comes from CPython's free list, where an instance of a class (slotted, no ``__init__``)
costs a type call and a heap type's deallocation: 616 instructions more per message,
+11 % on S1 (benchmarks/instructions.py; a slotted ``Run`` was tried). So the layout
stays private to this package: the dispatcher indexes it (its hot paths with literal
indices), everything else goes through the functions of this module.
"""

MESSAGE, PARENT, ENVELOPE, CONTEXT, HANDLER, ATTEMPT = range(6)
"""The positions of a run's fields (``ATTEMPT`` only after :func:`enter_attempt`)."""


current_run: ContextVar[Run | None] = ContextVar("messagebus.current_run", default=None)


def envelope_of(run: Run) -> Envelope[Message]:
    """Return the envelope of ``run``, making it (and its causes') on first call."""
    envelope: Envelope[Message] | None = run[ENVELOPE]
    if envelope is None:
        parent = run[PARENT]
        envelope = run[ENVELOPE] = lazy_envelope(
            run[MESSAGE], None if parent is None else envelope_of(parent)
        )
    return envelope


def last_envelope(run: Run) -> Envelope[Message]:
    """Return the envelope the handler last saw: its latest attempt's, else the run's."""
    context: Context[Message] | None = run[CONTEXT]
    if context is not None:
        return context.envelope
    if len(run) > ATTEMPT:
        handler, envelope = run[ATTEMPT]
        if handler is run[HANDLER]:
            return envelope  # type: ignore[no-any-return]
    return envelope_of(run)


def latest_attempt(envelope: Envelope[Message]) -> int:
    """Return the number of the latest attempt of the handler run in progress.

    For code around a handler, told ``envelope`` when the run began: a retry inside it
    may have run more attempts since. Outside handler runs, ``envelope.attempt``.
    """
    run = current_run.get()
    return envelope.attempt if run is None else last_envelope(run).attempt


def enter_attempt(envelope: Envelope[Message]) -> None:
    """Record that the handler run in progress starts another attempt, on ``envelope``.

    A retrying middleware calls it before each new attempt, so that what is told about
    the run afterwards (the log lines around it, a dead letter, :func:`add_message_context`)
    carries that attempt's number, whether the handler takes a ``ctx`` or not.

    Raises:
        BusStateError: no handler runs in this task.
    """
    run = _running()
    if len(run) > ATTEMPT:
        run[ATTEMPT] = (run[HANDLER], envelope)
    else:
        run.append((run[HANDLER], envelope))


def current_envelope() -> Envelope[Message] | None:
    """Return the envelope of the message being handled in this task, or None outside handlers."""
    run = current_run.get()
    return None if run is None else envelope_of(run)


def add_message_context(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the handled message's ids to a structlog event dict (a structlog processor).

    Add it to your structlog ``processors``; any line logged while a handler runs (in
    the handler, in code it calls, in tasks it starts) gets ``message_id``,
    ``correlation_id``, ``causation_id``, ``message_type``, ``handler`` and ``attempt``.
    Keys already in the line win. It costs nothing per dispatch: the ids are read when
    a line is logged, and made then if nothing made them before.
    """
    run = current_run.get()
    if run is None:
        return event_dict
    envelope = last_envelope(run)
    event_dict.setdefault("message_type", envelope.message_type)
    event_dict.setdefault("message_id", envelope.message_id)
    event_dict.setdefault("correlation_id", envelope.correlation_id)
    event_dict.setdefault("causation_id", envelope.causation_id)
    handler: HandlerInfo | None = run[HANDLER]
    if handler is not None:
        event_dict.setdefault("handler", handler.name)
    event_dict.setdefault("attempt", envelope.attempt)
    return event_dict


def _running() -> Run:
    run = current_run.get()
    if run is None or run[HANDLER] is None:
        raise BusStateError("follow-ups exist only while a handler runs (in its middleware)")
    return run


def held_follow_ups() -> tuple[Envelope[Message], ...]:
    """Return the follow-ups the handler run in progress has held back so far, in order.

    Call it from a middleware after ``await call_next(envelope)`` (or from the handler).
    A handler that takes no ``ctx`` holds none.

    Raises:
        BusStateError: no handler runs in this task.
    """
    context: Context[Message] | None = _running()[CONTEXT]
    return () if context is None or context._held is None else tuple(context._held)


def take_follow_ups() -> list[Envelope[Message]]:
    """Remove the run's held follow-ups and return them: the caller now delivers them.

    The bus will not dispatch what was taken. :class:`~messagebus.middleware.
    UnitOfWorkMiddleware` takes them to write them to the outbox in its transaction.

    Raises:
        BusStateError: no handler runs in this task.
    """
    context: Context[Message] | None = _running()[CONTEXT]
    if context is None or not context._held:
        return []
    held, context._held = context._held, None
    return held


def discard_follow_ups() -> None:
    """Forget the run's held follow-ups: a run that did not succeed announces nothing.

    Raises:
        BusStateError: no handler runs in this task.
    """
    take_follow_ups()


def hold_follow_ups(envelopes: Iterable[Envelope[Message]]) -> None:
    """Hold ``envelopes`` back as follow-ups of the run, after those held already.

    With :func:`take_follow_ups` this replaces them: tracing takes them and holds
    stamped copies instead. The envelopes are dispatched as they are (no new ids).

    Raises:
        BusStateError: no handler runs in this task, or its handler takes no ``ctx``
            (there is nowhere to hold them).
    """
    run = _running()
    context: Context[Message] | None = run[CONTEXT]
    if context is None:
        raise BusStateError(f"{run[HANDLER].name} takes no ctx: it cannot hold follow-ups")
    added = list(envelopes)
    if context._held is None:
        context._held = added
    else:
        context._held.extend(added)
