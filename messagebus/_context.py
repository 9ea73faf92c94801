"""Which message is being handled right now, and the handler context ``ctx``.

While a handler runs, a context variable points at the *frame* of the message it
handles. Anything that dispatches a message from inside (``ctx.publish``, a direct
``bus.send``, a middleware) reads it to link the new message to its cause: the new
envelope inherits ``correlation_id`` and gets ``causation_id`` = the handled message's
id. Context variables follow tasks, so this holds for tasks the handler starts too.

A frame is a 5-item list rather than an object: one is made per dispatched message on
the hot path, and a list literal costs a fifth of an instance with an ``__init__``
(measured in ``benchmarks/dispatch.py``). Its slots::

    [0] message       the Command or Event
    [1] parent        the frame of the message being handled when this one was sent, or None
    [2] envelope      the Envelope, made on first need (None until then)
    [3] context       the Context of the handler run in progress, if one was made
    [4] handler       the HandlerInfo of the handler running on it (None between runs)
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from messagebus._envelope import Envelope, lazy_envelope
from messagebus._errors import BusStateError
from messagebus._messages import Message

if TYPE_CHECKING:
    from messagebus._bus import MessageBus
    from messagebus._handlers import HandlerInfo
    from messagebus._unit_of_work import UnitOfWork

__all__ = ["Context", "Frame", "add_message_context", "current_envelope", "envelope_of"]

M_co = TypeVar("M_co", bound=Message, covariant=True)

Frame = list[Any]

current_frame: ContextVar[Frame | None] = ContextVar("messagebus.current_frame", default=None)


def envelope_of(frame: Frame) -> Envelope[Message]:
    """Return the envelope of ``frame``, making it (and its parents') on first call."""
    envelope: Envelope[Message] | None = frame[2]
    if envelope is None:
        parent = frame[1]
        envelope = frame[2] = lazy_envelope(
            frame[0], None if parent is None else envelope_of(parent)
        )
    return envelope


def current_envelope() -> Envelope[Message] | None:
    """Return the envelope of the message being handled in this task, or None outside handlers."""
    frame = current_frame.get()
    return None if frame is None else envelope_of(frame)


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
    frame = current_frame.get()
    if frame is None:
        return event_dict
    context: Context[Message] | None = frame[3]
    envelope = context.envelope if context is not None else envelope_of(frame)
    handler: HandlerInfo | None = frame[4]
    event_dict.setdefault("message_type", envelope.message_type)
    event_dict.setdefault("message_id", envelope.message_id)
    event_dict.setdefault("correlation_id", envelope.correlation_id)
    event_dict.setdefault("causation_id", envelope.causation_id)
    if handler is not None:
        event_dict.setdefault("handler", handler.name)
    event_dict.setdefault("attempt", envelope.attempt)
    return event_dict


class FollowUps:
    """``publish`` and ``send`` for messages held back until some work succeeds.

    The handler context and the unit of work both have them; each says in ``_hold``
    where held messages wait.
    """

    __slots__ = ()

    _bus: MessageBus

    def publish(
        self,
        event: Message,
        /,
        *,
        idempotency_key: str | None = None,
        group_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Hold ``event`` back; publish it once this handler run has succeeded.

        (In a unit of work: once it has committed; the event is an outbox row of it.)

        Raises:
            MessageKindError: ``event`` is not an Event.
        """
        self._bus.check_publishable(event)
        self._hold(event, idempotency_key, group_key, headers)

    def send(
        self,
        command: Message,
        /,
        *,
        idempotency_key: str | None = None,
        group_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Hold ``command`` back; send it once this handler run has succeeded.

        (In a unit of work: once it has committed.) The command's result is not
        returned here: it runs later. If its handler fails, the failure is logged and
        recorded as a dead letter.

        Raises:
            MessageKindError: ``command`` is not a Command.
            NoHandlerError: nowhere to send it (found now, not later, so that this run
                fails and whatever it wrote rolls back).
        """
        self._bus.check_sendable(command)
        self._hold(command, idempotency_key, group_key, headers)

    def _hold(
        self,
        message: Message,
        idempotency_key: str | None,
        group_key: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        raise NotImplementedError


class Context(FollowUps, Generic[M_co]):
    """What a handler gets as its second argument: the envelope and follow-up messages.

    Messages given to :meth:`publish` and :meth:`send` are held back until the handler
    (and every middleware around it, a unit of work included) has succeeded; then the
    bus dispatches them in the order given, after the message being handled, breadth
    first. If the handler fails they are discarded, so a failed handler announces
    nothing. Each follow-up inherits ``correlation_id`` and has ``causation_id`` set to
    this message's id. A context belongs to one handler run: do not keep it afterwards.
    """

    __slots__ = ("_bus", "_pending", "envelope", "handler")

    envelope: Envelope[M_co]
    handler: HandlerInfo

    def __init__(self, bus: MessageBus, envelope: Envelope[M_co], handler: HandlerInfo) -> None:
        self._bus = bus
        self._pending: list[Envelope[Message]] | None = None
        self.envelope = envelope
        self.handler = handler

    @property
    def message(self) -> M_co:
        """The message being handled."""
        return self.envelope.message

    @property
    def unit_of_work(self) -> UnitOfWork:
        """The unit of work this run is in (see ``UnitOfWorkMiddleware``).

        Raises:
            BusStateError: the handler does not run in a unit of work.
        """
        from messagebus._unit_of_work import current_unit_of_work  # noqa: PLC0415  # cycle

        unit = current_unit_of_work()
        if unit is None:
            raise BusStateError(
                f"{self.handler.name} does not run in a unit of work: wrap it in "
                "UnitOfWorkMiddleware(bus), or open one with bus.unit_of_work()"
            )
        return unit

    def _hold(
        self,
        message: Message,
        idempotency_key: str | None,
        group_key: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        envelope: Envelope[Message] = Envelope(
            message,
            parent=self.envelope,
            idempotency_key=idempotency_key,
            group_key=group_key,
            headers=headers,
        )
        if self._pending is None:
            self._pending = [envelope]
        else:
            self._pending.append(envelope)
