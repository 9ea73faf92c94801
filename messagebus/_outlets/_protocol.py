"""The outlet contracts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from messagebus._envelope import Envelope
from messagebus._messages import Message

if TYPE_CHECKING:
    from messagebus._unit_of_work import UnitOfWork

__all__ = ["Outlet", "StagingOutlet"]


class Outlet(Protocol):
    """Emits envelopes: the messages a handler held back, or a ``publish`` outside one.

    Contract: :meth:`emit` takes the envelopes in the order they were produced and
    keeps that order per destination. It returns once each is where this outlet puts
    messages (handled here, held by the transport, appended and passed on). A failure
    of a local handler is not an error of ``emit`` (each handler is isolated); a
    failure to hand messages on is, as a :class:`~messagebus.TransportError` (or an
    :class:`~messagebus.EncodeError` before anything was sent).
    """

    async def emit(self, envelopes: Sequence[Envelope[Message]]) -> None:
        """Send ``envelopes`` on, in order."""


class StagingOutlet(Outlet, Protocol):
    """An outlet that can also write envelopes into a unit of work's transaction."""

    async def stage(self, unit: UnitOfWork, envelopes: Sequence[Envelope[Message]]) -> None:
        """Write ``envelopes`` in ``unit``'s transaction; they leave after its commit.

        Runs just before the commit; an exception rolls the whole unit back.
        """
