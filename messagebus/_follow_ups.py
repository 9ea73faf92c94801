"""``publish``, ``send`` and ``schedule`` for messages held back until some work succeeds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from messagebus._messages import Command, Message
from messagebus._schedule import ScheduleId, require

if TYPE_CHECKING:
    from messagebus._envelope import Envelope
    from messagebus._schedule import Scheduling

__all__ = ["Checks", "FollowUps"]


class Checks(Protocol):
    """What a holder asks before it holds a message (would the bus take it)."""

    def check_sendable(self, command: object) -> None:
        """Raise what sending ``command`` would raise before running any handler."""

    def check_publishable(self, event: object) -> None:
        """Raise :class:`~messagebus.MessageKindError` unless ``event`` is an Event."""

    @property
    def scheduling(self) -> Scheduling | None:
        """How the bus schedules messages; None when it cannot (no outbox)."""


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

    def schedule(
        self,
        message: Message,
        /,
        *,
        at: datetime | None = None,
        delay: timedelta | float | None = None,
        idempotency_key: str | None = None,
        group_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ScheduleId:
        """Hold ``message`` back, to be written to the outbox with a due time; return its id.

        Exactly one of ``at`` (an aware datetime; in the past: due now) and ``delay`` (a
        timedelta or seconds from now, on the outbox's clock). A command is sent, an
        event published, when due (see :mod:`messagebus._schedule`). Like a follow-up it
        is written only if this run succeeds: in its unit of work's transaction if it
        has one, else in a transaction of its own just after. Cancel it with
        :meth:`MessageBus.cancel_scheduled <messagebus.MessageBus.cancel_scheduled>`.

        Raises:
            ConfigurationError: the bus has no outbox, or an event log and ``message``
                is an event.
            InvalidArgumentError: both or neither of ``at`` and ``delay``; a naive
                ``at``; a negative ``delay``.
            ArgumentTypeError: ``at`` or ``delay`` of the wrong type.
            MessageKindError: ``message`` is not a Command or an Event.
            NoHandlerError: a command with nowhere to go.
        """
        scheduling = require(self._checks.scheduling)
        if isinstance(message, Command):
            self._checks.check_sendable(message)
        else:
            self._checks.check_publishable(message)
        due = scheduling.headers(message, at, delay, headers)
        return ScheduleId(self._hold(message, idempotency_key, group_key, due).message_id)

    def _hold(
        self,
        message: Message,
        idempotency_key: str | None,
        group_key: str | None,
        headers: Mapping[str, str] | None,
    ) -> Envelope[Message]:
        raise NotImplementedError
