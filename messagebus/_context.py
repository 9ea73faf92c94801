"""The handler context ``ctx``: the envelope being handled and its held-back follow-ups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

from messagebus._envelope import Envelope
from messagebus._errors import BusStateError
from messagebus._follow_ups import Checks, FollowUps
from messagebus._messages import Message
from messagebus._unit_of_work import UnitOfWork, current_unit_of_work

if TYPE_CHECKING:
    from messagebus._handlers import HandlerInfo

__all__ = ["Context"]

M_co = TypeVar("M_co", bound=Message, covariant=True)


class Context(FollowUps, Generic[M_co]):
    """What a handler gets as its second argument: the envelope and follow-up messages.

    Messages given to :meth:`publish` and :meth:`send` are held back until the handler
    (and every middleware around it, a unit of work included) has succeeded; then the
    bus dispatches them in the order given, after the message being handled, breadth
    first. If the handler fails they are discarded, so a failed handler announces
    nothing. Each follow-up inherits ``correlation_id`` and has ``causation_id`` set to
    this message's id. A context belongs to one handler run (one attempt): do not keep
    it afterwards. Middleware reaches the held messages through
    :func:`messagebus.extension.held_follow_ups` and its siblings.
    """

    __slots__ = ("_checks", "_held", "envelope", "handler")

    envelope: Envelope[M_co]
    handler: HandlerInfo

    def __init__(self, checks: Checks, envelope: Envelope[M_co], handler: HandlerInfo) -> None:
        self._checks = checks
        self._held: list[Envelope[Message]] | None = None
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
    ) -> Envelope[Message]:
        envelope: Envelope[Message] = Envelope(
            message,
            parent=self.envelope,
            idempotency_key=idempotency_key,
            group_key=group_key,
            headers=headers,
        )
        if self._held is None:
            self._held = [envelope]
        else:
            self._held.append(envelope)
        return envelope
