"""Recording what leaves the handlers of the application's own bus, for one test.

``with BusRecorder(bus) as recorder:`` records every message a handler of ``bus`` holds
back while the block runs (``ctx.publish`` / ``ctx.send``), with its envelope, and
the assertion helpers read it: ``recorder.assert_published(PostPublished, post_id=1)``.
A failing assertion lists everything that was recorded.

It sees through two public doors, because neither alone sees everything:

- A middleware, added once per bus with ``bus.add_middleware`` (innermost of the global
  middleware), that reads :func:`~messagebus.extension.held_follow_ups` after the rest of
  the chain returned. It sees the follow-ups of every successful handler run, with the
  handler's name, on any bus. It cannot see what a per-handler middleware took before
  it (a per-handler ``UnitOfWorkMiddleware`` writing them to the outbox), messages sent
  straight with ``bus.publish`` / ``bus.send`` / ``bus.enqueue`` or ``uow.publish``,
  nor the follow-ups of a run that failed (they are never dispatched).
- :func:`record_outgoing`, an outgoing hook for the bus's constructor
  (``MessageBus(..., outgoing=[record_outgoing])``): it sees every envelope that
  leaves the process, to the transport or into the outbox, whoever sent it. It sees
  nothing on a bus that keeps everything in the process (no transport, no outbox),
  and it names a handler only when the recorder's middleware runs it (not a message
  sent from outside any handler, nor a held one dispatched after its handler returned).

An envelope seen through both is recorded once (by message id): the middleware sees it
first, with the handler's name. What :func:`record_outgoing` sees while a handler runs
is recorded with that handler's name. What it sees written to the outbox in a unit of
work is recorded once the unit commits, and never if it rolls back: those messages never
leave. (A message published straight to the transport from inside an open unit of work
is taken for one written in it.) A message scheduled for later (``ctx.schedule``,
``Process.schedule``) is recorded as ``"scheduled"``, with its due time.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import attrs

from messagebus._bus import MessageBus
from messagebus._envelope import Envelope
from messagebus._messages import Command, Event, Message
from messagebus._schedule import due_of
from messagebus._unit_of_work import current_unit_of_work
from messagebus.extension import CallNext, HandlerInfo, Middleware, held_follow_ups

__all__ = ["BusRecorder", "Recorded", "record_outgoing"]


Kind = Literal["published", "sent", "scheduled"]


def _when(due: float) -> str:
    return datetime.fromtimestamp(due, UTC).isoformat(timespec="milliseconds")


@attrs.frozen
class Recorded:
    """One message that left a handler (or the process), as the recorder saw it.

    Attributes:
        envelope: the message with its metadata (ids, correlation, causation, headers).
        kind: ``"published"`` for an event, ``"sent"`` for a command (``ctx.send``,
            ``bus.enqueue``), ``"scheduled"`` for either when it is due later (see
            :attr:`due`).
        handler: the name of the handler that held it back or sent it while it ran;
            None if it was seen only leaving the process (:func:`record_outgoing`)
            outside any handler the recorder's middleware ran.
    """

    envelope: Envelope[Message]
    kind: Kind
    handler: str | None

    @property
    def message(self) -> Message:
        """The message itself."""
        return self.envelope.message

    @property
    def due(self) -> float | None:
        """When a scheduled message is due (seconds since the Unix epoch); None otherwise."""
        return due_of(self.envelope)

    def describe(self) -> str:
        """One line for a failure message: kind, message, handler, correlation, causation."""
        envelope = self.envelope
        by = "" if self.handler is None else f" by {self.handler}"
        due = self.due
        when = "" if due is None else f" due at {_when(due)}"
        return (
            f"{self.kind} {envelope.message!r}{when}{by} "
            f"(correlation {envelope.correlation_id}, causation {envelope.causation_id})"
        )


class BusRecorder:
    """Records what leaves the handlers of ``bus`` while it is entered; see the module.

    Enter it for one test (``with BusRecorder(bus) as recorder:``); entering and leaving
    add and remove nothing from the bus's handlers, so a module-level bus serves test
    after test. The records stay readable after the block.

    Attributes:
        records: everything recorded, in the order it was seen.
    """

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.records: list[Recorded] = []
        self._seen: set[str] = set()

    def __enter__(self) -> BusRecorder:
        _tap_of(self.bus).recorders.append(self)
        _active.append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _tap_of(self.bus).recorders.remove(self)
        _active.remove(self)

    # -- what was recorded ----------------------------------------------------------------

    @property
    def published(self) -> list[Envelope[Message]]:
        """The envelopes of the events recorded, in order."""
        return [record.envelope for record in self.records if record.kind == "published"]

    @property
    def sent(self) -> list[Envelope[Message]]:
        """The envelopes of the commands recorded, in order."""
        return [record.envelope for record in self.records if record.kind == "sent"]

    @property
    def scheduled(self) -> list[Envelope[Message]]:
        """The envelopes of the messages scheduled for later, in order."""
        return [record.envelope for record in self.records if record.kind == "scheduled"]

    def clear(self) -> None:
        """Forget what was recorded so far (between the arrange and act of a test)."""
        self.records.clear()
        self._seen.clear()

    # -- assertions -----------------------------------------------------------------------

    def assert_published(self, event_type: type[Event], /, **fields: Any) -> Envelope[Message]:
        """Return the first recorded event of ``event_type`` whose attributes equal ``fields``.

        Raises:
            AssertionError: none was recorded; the message lists what was.
        """
        return self._find("published", event_type, fields)

    def assert_sent(self, command_type: type[Command[Any]], /, **fields: Any) -> Envelope[Message]:
        """Return the first recorded command of ``command_type`` whose attributes equal ``fields``.

        Raises:
            AssertionError: none was recorded; the message lists what was.
        """
        return self._find("sent", command_type, fields)

    def assert_scheduled(
        self, message_type: type[Message], /, *, due: float | None = None, **fields: Any
    ) -> Envelope[Message]:
        """Return the first scheduled message of ``message_type`` whose attributes equal ``fields``.

        ``due`` (seconds since the Unix epoch, on the outbox store's clock), if given,
        must equal its due time too.

        Raises:
            AssertionError: none was recorded; the message lists what was, with due times.
        """
        return self._find("scheduled", message_type, fields, due)

    def assert_nothing_published(self) -> None:
        """Raise :class:`AssertionError`, listing them, if any event was recorded."""
        self._none("published")

    def assert_nothing_sent(self) -> None:
        """Raise :class:`AssertionError`, listing them, if any command was recorded."""
        self._none("sent")

    def assert_nothing_scheduled(self) -> None:
        """Raise :class:`AssertionError`, listing them, if anything was scheduled."""
        self._none("scheduled")

    def _find(
        self,
        kind: Kind,
        message_type: type[Message],
        fields: dict[str, Any],
        due: float | None = None,
    ) -> Envelope[Message]:
        for record in self.records:
            message = record.message
            if (
                record.kind == kind
                and type(message) is message_type
                and all(getattr(message, name, _MISSING) == value for name, value in fields.items())
                and (due is None or record.due == due)
            ):
                return record.envelope
        wanted = ", ".join(f"{name}={value!r}" for name, value in fields.items())
        when = "" if due is None else f" due at {_when(due)}"
        raise AssertionError(
            f"expected {message_type.__qualname__}({wanted}) to be {kind}{when}; " + self._listing()
        )

    def _none(self, kind: str) -> None:
        if any(record.kind == kind for record in self.records):
            raise AssertionError(f"expected nothing {kind}; " + self._listing())

    def _listing(self) -> str:
        if not self.records:
            return "nothing was recorded"
        lines = [f"  {record.describe()}" for record in self.records]
        count = len(self.records)
        return f"{count} message{'s' if count > 1 else ''} recorded:\n" + "\n".join(lines)

    # -- the doors ------------------------------------------------------------------------

    def _add(self, envelopes: Sequence[Envelope[Message]], handler: str | None) -> None:
        for envelope in envelopes:
            if envelope.message_id in self._seen:
                continue  # held (with the handler's name), then seen leaving the process
            kind: Kind
            if due_of(envelope) is not None:
                kind = "scheduled"
            else:
                kind = "published" if isinstance(envelope.message, Event) else "sent"
            self._seen.add(envelope.message_id)
            self.records.append(Recorded(envelope, kind, handler))


_MISSING = object()

_active: list[BusRecorder] = []
"""The recorders entered right now, for :func:`record_outgoing` (which has no bus)."""

_handler: ContextVar[str | None] = ContextVar("messagebus_recorder_handler", default=None)
"""The name of the handler running under a recorder's middleware in this task."""


def record_outgoing(envelope: Envelope[Message]) -> Envelope[Message]:
    """Record ``envelope`` in every entered :class:`BusRecorder` (an outgoing hook).

    Pass it to the bus under test, ``MessageBus(..., outgoing=[record_outgoing])``, to
    record everything that leaves the process (see the module). It returns the envelope
    unchanged and costs a list test when no recorder is entered.
    """
    if not _active:
        return envelope
    handler = _handler.get()
    recorders = tuple(_active)

    def add() -> None:
        for recorder in recorders:
            recorder._add((envelope,), handler)

    unit = current_unit_of_work()
    if unit is None:
        add()
    else:
        unit.after_commit(add)  # written to the outbox: it leaves only if this commits
    return envelope


class _Tap:
    """The one recording middleware of a bus, forwarding to its entered recorders."""

    def __init__(self) -> None:
        self.recorders: list[BusRecorder] = []

    def bind(self, handler: HandlerInfo) -> Middleware:
        name = handler.name
        recorders = self.recorders

        async def record(envelope: Envelope[Message], call_next: CallNext) -> Any:
            if not recorders:
                return await call_next(envelope)
            token = _handler.set(name)
            try:
                result = await call_next(envelope)
            finally:
                _handler.reset(token)
            held = held_follow_ups()
            for recorder in recorders:
                recorder._add(held, name)
            return result

        return record


_taps: weakref.WeakKeyDictionary[MessageBus, _Tap] = weakref.WeakKeyDictionary()


def _tap_of(bus: MessageBus) -> _Tap:
    # Added once per bus: bus.add_middleware has no inverse, and a module-level bus
    # serves many tests.
    tap = _taps.get(bus)
    if tap is None:
        tap = _taps[bus] = _Tap()
        bus.add_middleware(tap)
    return tap
