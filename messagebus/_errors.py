"""The exceptions messagebus raises, rooted at one base class.

Catch :class:`MessageBusError` to catch everything the library raises on its own
account. A handler's own exceptions are never wrapped on their way back to the
sender of a command: ``await bus.send(cmd)`` re-raises exactly what the handler raised.

The tree::

    MessageBusError
    ├── ConfigurationError            raised at registration or start-up, never mid-dispatch
    │   ├── DuplicateHandlerError     a second handler for one command type
    │   ├── DuplicateSubscriberError  two subscribers with one name on one event type
    │   ├── DuplicateMessageTypeError two classes claim one wire name and version
    │   ├── InvalidMessageTypeError   a bad wire name or version, or not a Command/Event
    │   ├── InvalidHandlerError       a handler whose signature the bus cannot call
    │   ├── UnsupportedBackendError   a transport that cannot run on this async library
    │   ├── InboxConfigurationError   inbox mode without a unit of work on the store's database
    │   └── DatabaseMismatchError     stores that share transactions made from two databases
    ├── DispatchError                 raised by send() / publish() / ctx.send() / ctx.publish()
    │   ├── NoHandlerError            a command with no registered handler
    │   ├── MessageKindError          an event sent, a command published, or not a message
    │   └── SequenceGapError          an event of a stream cannot be delivered in order
    ├── SerializationError            a message could not cross the wire format
    │   ├── EncodeError               a message field has no JSON form
    │   └── DecodeError               a body is not a registered type's CloudEvents JSON
    ├── RetriesExhausted              a retry policy gave up; the last error is its __cause__
    ├── DeadLetterNotFoundError       no dead letter has the id asked for (also a LookupError)
    ├── IdempotencyError              the idempotency layer would not run the handler
    │   ├── IdempotencyKeyReused      the key was used before for a different payload
    │   └── DuplicateInProgressError  the same message is being handled elsewhere right now
    ├── TransportError                a transport could not do what was asked
    │   ├── TransportUnavailableError the broker could not be reached (consumers back off)
    │   ├── DestinationNotFoundError  no such queue or topic
    │   ├── MessageTooLargeError      a body over the transport's size limit; nothing sent
    │   ├── SendError                 some messages of a send were not sent (it lists them)
    │   └── DeliveryExpiredError      a delivery settled after its receipt stopped being valid
    ├── BusStateError                 the bus is not in the state asked for (entered twice)
    └── CommandRejected               a handler refused the command (a business outcome)

Later layers add their own branches under the same root; each one is documented where
it is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from messagebus._envelope import Envelope
    from messagebus._messages import Message

__all__ = [
    "BusStateError",
    "CommandRejected",
    "ConfigurationError",
    "DatabaseMismatchError",
    "DeadLetterNotFoundError",
    "DecodeError",
    "DeliveryExpiredError",
    "DestinationNotFoundError",
    "DispatchError",
    "DuplicateHandlerError",
    "DuplicateInProgressError",
    "DuplicateMessageTypeError",
    "DuplicateSubscriberError",
    "EncodeError",
    "IdempotencyError",
    "IdempotencyKeyReused",
    "InboxConfigurationError",
    "InvalidHandlerError",
    "InvalidMessageTypeError",
    "MessageBusError",
    "MessageKindError",
    "MessageTooLargeError",
    "NoHandlerError",
    "RetriesExhausted",
    "SendError",
    "SequenceGapError",
    "SerializationError",
    "TransportError",
    "TransportUnavailableError",
    "UnsupportedBackendError",
]


class MessageBusError(Exception):
    """Base class of every exception messagebus raises on its own account."""


class ConfigurationError(MessageBusError):
    """The bus was set up in a way that cannot work; raised before any message moves."""


class DuplicateHandlerError(ConfigurationError):
    """A command type already has its one handler."""


class DuplicateSubscriberError(ConfigurationError):
    """An event type already has a subscriber with this name."""


class DuplicateMessageTypeError(ConfigurationError):
    """Two different classes claim the same wire name and version."""


class InvalidMessageTypeError(ConfigurationError):
    """A message type has an unusable wire name or version, or is not a Command or Event."""


class InvalidHandlerError(ConfigurationError):
    """A handler's signature is not ``(message)`` or ``(message, ctx)``."""


class UnsupportedBackendError(ConfigurationError):
    """A component cannot run on the async library in use (the SQS transport on trio)."""


class InboxConfigurationError(ConfigurationError):
    """Inbox mode cannot work here: no unit of work is open, or the store is elsewhere.

    Raised by :class:`~messagebus.middleware.IdempotencyMiddleware` with ``inbox=True``
    when the handler runs outside a unit of work (no
    :class:`~messagebus.middleware.UnitOfWorkMiddleware` outside it), when the store is
    not an :class:`~messagebus.idempotency.InboxStore`, or when the store was not made
    from the database object the unit of work's outbox was made from. Never retried (a
    :class:`~messagebus.ConfigurationError`).
    """


class DatabaseMismatchError(ConfigurationError):
    """Stores that must share transactions were not made from one database object.

    Raised when a bus is made with an outbox and an event log that are not both from
    one :class:`messagebus.sqlite.SQLiteDatabase` or
    :class:`messagebus.postgres.PostgresDatabase` (an in-memory log, or two database
    objects, even on one file: two connections are two transactions).
    """


class DispatchError(MessageBusError):
    """A message could not be dispatched as asked."""


class NoHandlerError(DispatchError):
    """A command was sent, but no handler is registered for its type."""


class MessageKindError(DispatchError, TypeError):
    """An event was sent, a command was published, or the object is not a message at all.

    Also a :class:`TypeError`, because it is one: the argument has the wrong kind.
    """


class TransportError(MessageBusError):
    """A transport could not do what was asked; vendor errors are its ``__cause__``."""


class TransportUnavailableError(TransportError):
    """The broker could not be reached or answered with a server fault; try again later."""


class DestinationNotFoundError(TransportError, LookupError):
    """No queue or topic has the name given (not provisioned, or deleted)."""


class MessageTooLargeError(TransportError):
    """A message is larger than the transport accepts; nothing of that send left.

    Attributes:
        message_id: the envelope id of the first message over the limit.
        size: its size in bytes.
        limit: the transport's limit in bytes.
    """

    def __init__(self, message_id: str, size: int, limit: int) -> None:
        super().__init__(f"message {message_id} is {size} bytes; the transport takes {limit}")
        self.message_id = message_id
        self.size = size
        self.limit = limit


class SendError(TransportError):
    """Some messages of one send were not stored; every message not listed was.

    Attributes:
        failed: ``(message_id, reason)`` for each message that was not sent.
    """

    def __init__(self, failed: Sequence[tuple[str, str]]) -> None:
        shown = "; ".join(f"{message_id}: {reason}" for message_id, reason in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        super().__init__(f"{len(failed)} message(s) not sent: {shown}{more}")
        self.failed = tuple(failed)


class DeliveryExpiredError(TransportError):
    """A delivery was settled or extended after its visibility ended (receipt stale).

    The message may be with another receiver now; the handler's work must be idempotent.
    """


class SequenceGapError(DispatchError):
    """An event could not be delivered in order: the events before it did not come.

    Attributes:
        envelope: the held (or refused) envelope, to dead-letter.
        stream: its stream (``group_key``).
        sequence: its sequence.
        expected: the sequence the stream was waiting for.
        reason: ``"timeout"`` (held longer than ``max_wait``) or ``"full"`` (no room
            among the ``max_held``).
    """

    def __init__(
        self, envelope: Envelope[Message], stream: str, sequence: int, expected: int, reason: str
    ) -> None:
        detail = "waited too long" if reason == "timeout" else "found the resequencer full"
        super().__init__(
            f"stream {stream!r}: sequence {sequence} {detail} while sequence {expected} "
            f"is missing ({reason})"
        )
        self.envelope = envelope
        self.stream = stream
        self.sequence = sequence
        self.expected = expected
        self.reason = reason


class BusStateError(MessageBusError):
    """The bus is not in the state the operation needs, such as entering it twice."""


class CommandRejected(MessageBusError):
    """Raised by a command handler to refuse the command; the sender receives it as is.

    A rejection is a business outcome, not a fault: it is never retried and it is not a
    dead letter when the sender is waiting for the answer.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SerializationError(MessageBusError):
    """A message could not be turned into the wire format, or back."""


class EncodeError(SerializationError):
    """A message has a field with no JSON form; nothing was sent or stored."""


class DecodeError(SerializationError):
    """A body is not CloudEvents JSON of a registered type and version. Never retried."""


class RetriesExhausted(MessageBusError):
    """A retry policy gave up on a handler; the last failure is ``__cause__``.

    Attributes:
        handler: the name of the handler that kept failing.
        attempts: how many times it ran.
        first_failed_at: when the first attempt failed.
    """

    def __init__(self, handler: str, attempts: int, first_failed_at: datetime) -> None:
        super().__init__(f"{handler} failed {attempts} time(s); giving up")
        self.handler = handler
        self.attempts = attempts
        self.first_failed_at = first_failed_at


class DeadLetterNotFoundError(MessageBusError, LookupError):
    """No dead letter has the id asked for (it was replayed, purged, or never existed)."""


class IdempotencyError(MessageBusError):
    """The idempotency layer would not run the handler on this message."""


class IdempotencyKeyReused(IdempotencyError):
    """The idempotency key was used before with a different payload. Never retried.

    Two different intentions were given one key (a client bug, or a key that is not
    unique enough); running the second would return the first one's stored result.
    """


class DuplicateInProgressError(IdempotencyError):
    """Another run holds this key and did not finish within the wait; try again later."""
