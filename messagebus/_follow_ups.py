"""``publish`` and ``send`` for messages held back until some work succeeds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from messagebus._messages import Message

__all__ = ["Checks", "FollowUps"]


class Checks(Protocol):
    """What a holder asks before it holds a message (would the bus take it)."""

    def check_sendable(self, command: object) -> None:
        """Raise what sending ``command`` would raise before running any handler."""

    def check_publishable(self, event: object) -> None:
        """Raise :class:`~messagebus.MessageKindError` unless ``event`` is an Event."""


class FollowUps:
    """``publish`` and ``send`` that hold messages back; the subclass says where.

    The handler context and the unit of work both have them; each says in ``_hold``
    where held messages wait.
    """

    __slots__ = ()

    _checks: Checks

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
        self._checks.check_publishable(event)
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
        self._checks.check_sendable(command)
        self._hold(command, idempotency_key, group_key, headers)

    def _hold(
        self,
        message: Message,
        idempotency_key: str | None,
        group_key: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        raise NotImplementedError
