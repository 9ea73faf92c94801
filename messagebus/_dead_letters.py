"""Dead letters: messages a handler gave up on, kept as data rather than log lines."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import attrs

from messagebus._envelope import Envelope
from messagebus._messages import Message

__all__ = ["DeadLetter", "DeadLetterStore", "InMemoryDeadLetterStore"]


@attrs.frozen
class DeadLetter:
    """One message one handler gave up on, with why and when.

    Attributes:
        envelope: the message and its metadata as the handler last saw it.
        handler: the name of the handler or subscriber that failed.
        error_type: the exception's qualified class name, such as ``"smtplib.SMTPError"``.
        error_message: ``str()`` of the exception.
        traceback: the formatted traceback of the last failure.
        attempts: how many times the handler ran on this message.
        first_failed_at: when the first attempt failed (UTC).
        last_failed_at: when the last attempt failed (UTC).
    """

    envelope: Envelope[Message] = attrs.field(eq=False)
    handler: str
    error_type: str
    error_message: str
    traceback: str = attrs.field(repr=False)
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime

    @classmethod
    def from_exception(
        cls,
        envelope: Envelope[Message],
        handler: str,
        exc: BaseException,
        *,
        attempts: int | None = None,
        first_failed_at: datetime | None = None,
    ) -> DeadLetter:
        """Record ``exc`` raised by ``handler`` on ``envelope``, failing now."""
        now = datetime.now(UTC)
        error = type(exc)
        return cls(
            envelope=envelope,
            handler=handler,
            error_type=f"{error.__module__}.{error.__qualname__}",
            error_message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            attempts=envelope.attempt if attempts is None else attempts,
            first_failed_at=now if first_failed_at is None else first_failed_at,
            last_failed_at=now,
        )


class DeadLetterStore(Protocol):
    """Where dead letters go. Implementations must be safe to call from many tasks."""

    async def add(self, dead_letter: DeadLetter) -> None:
        """Keep ``dead_letter``; once this returns, it must not be lost."""

    async def list(self) -> Sequence[DeadLetter]:
        """Return every dead letter kept, oldest first."""


class InMemoryDeadLetterStore:
    """Keeps dead letters in a list in this process.

    Limits: nothing survives the process, and nothing is shared with other processes;
    for development and tests. Task-safe within one event loop.
    """

    def __init__(self) -> None:
        self._letters: list[DeadLetter] = []

    async def add(self, dead_letter: DeadLetter) -> None:
        """Append ``dead_letter``."""
        self._letters.append(dead_letter)

    async def list(self) -> Sequence[DeadLetter]:
        """Return every dead letter kept, oldest first."""
        return tuple(self._letters)
