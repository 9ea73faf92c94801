"""The exceptions messagebus raises, rooted at one base class.

Catch :class:`MessageBusError` to catch everything the library raises on its own
account. A handler's own exceptions are never wrapped on their way back to the
sender of a command: ``await bus.send(cmd)`` re-raises exactly what the handler raised.

The tree::

    MessageBusError
    ├── ConfigurationError            the calling code asked for what cannot work; never retried
    │   ├── DuplicateHandlerError     a second handler for one command type
    │   ├── DuplicateSubscriberError  two subscribers with one name on one event type
    │   ├── DuplicateMessageTypeError two classes claim one wire name and version
    │   ├── InvalidMessageTypeError   a bad wire name or version, or not a Command/Event
    │   ├── InvalidHandlerError       a handler whose signature the bus cannot call
    │   ├── UnsupportedBackendError   a transport that cannot run on this async library
    │   ├── InboxConfigurationError   inbox mode without a unit of work on the store's database
    │   ├── SchemaVersionError        a table's schema is newer than this messagebus knows
    │   ├── InvalidArgumentError      an argument a call cannot take (also a ValueError)
    │   ├── ArgumentTypeError         a value of the wrong type for its use (also a TypeError)
    │   ├── DatabaseMismatchError     stores that share transactions made from two databases
    │   └── InvalidURLError           a transport or database URL, naming the part that is wrong
    ├── DispatchError                 raised by send() / publish() / ctx.send() / ctx.publish()
    │   ├── NoHandlerError            a command with no registered handler
    │   ├── MessageKindError          an event sent, a command published, or not a message
    │   ├── SequenceGapError          an event of a stream cannot be delivered in order
    │   └── ProcessNotFoundError      a message for a process instance that does not exist
    ├── SerializationError            a message could not cross the wire format
    │   ├── EncodeError               a message field has no JSON form
    │   └── DecodeError               not a registered type's CloudEvents JSON, or a bad header
    ├── RetriesExhausted              a retry policy gave up; the last error is its __cause__
    ├── BatchFailedError              records of a Lambda invocation failed, raised on request
    ├── DeadLetterNotFoundError       no dead letter has the id asked for (also a LookupError)
    ├── StoreError                    a store's database refused a call (DynamoDB stores)
    │   └── StoreUnavailableError     it could not be reached, throttled us, or failed: try later
    ├── ProcessConflictError          a process instance changed under a handler (retried)
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

Where an error is also a built-in exception (``InvalidArgumentError`` is a
:class:`ValueError`, ``ArgumentTypeError`` and ``MessageKindError`` are
:class:`TypeError`, the not-found errors are :class:`LookupError`), it is because it is
one, so ``except ValueError`` around a call keeps working.

Outside the tree, on purpose:

- whatever a handler, a hook or an upcaster raised, re-raised as it was (or as the
  ``__cause__`` of :class:`RetriesExhausted` or :class:`DecodeError`);
- :class:`anyio.ClosedResourceError` from a store, database or unit of work used after
  it was closed, as anyio's own streams raise it;
- what Python's own protocols call for: :class:`NotImplementedError` from the bodies of
  protocols, :class:`AttributeError` from a module's ``__getattr__``,
  :class:`StopAsyncIteration` from an async iterator;
- :class:`AssertionError` from the checks in :mod:`messagebus.testing` (a failed check
  is a failed assertion, as pytest reports it);
- :class:`ImportError` when an optional extra (``anyio-messagebus[otel]``) is not installed.

``tests/test_error_tree.py`` holds the package to this: it fails on any new ``raise`` of
a built-in exception in library code.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from messagebus._envelope import Envelope
    from messagebus._messages import Message

__all__ = [
    "ArgumentTypeError",
    "BatchFailedError",
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
    "InvalidArgumentError",
    "InvalidHandlerError",
    "InvalidMessageTypeError",
    "InvalidURLError",
    "MessageBusError",
    "MessageKindError",
    "MessageTooLargeError",
    "NoHandlerError",
    "ProcessConflictError",
    "ProcessNotFoundError",
    "RetriesExhausted",
    "SchemaVersionError",
    "SendError",
    "SequenceGapError",
    "SerializationError",
    "StoreError",
    "StoreUnavailableError",
    "TransportError",
    "TransportUnavailableError",
    "UnsupportedBackendError",
]


class MessageBusError(Exception):
    """Base class of every exception messagebus raises on its own account."""


class ConfigurationError(MessageBusError):
    """The calling code asked for something that cannot work; no retry can change that.

    Raised at registration, at start-up, or when a call refuses its arguments, before
    the call has done anything. Every subclass is in
    :data:`~messagebus.retry.NEVER_RETRIED`: a handler that raises one is a bug or a broken
    deployment, and running it again would only fail again.
    """


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
    not an :class:`~messagebus.extension.InboxStore`, or when the store was not made
    from the database object the unit of work's outbox was made from. Never retried (a
    :class:`~messagebus.ConfigurationError`).
    """


class SchemaVersionError(ConfigurationError):
    """A table's recorded schema version is newer than this messagebus knows.

    Code of a newer messagebus migrated the table; an older one refuses it rather than
    read or write rows it does not understand. Nothing was created or changed. Upgrade
    messagebus (or point this process at another table).
    """


class InvalidArgumentError(ConfigurationError, ValueError):
    """A call got an argument it cannot take; the call did nothing.

    A negative limit, a naive datetime where an aware one is needed, a table name that
    is not an identifier, an option outside its choices. Also a :class:`ValueError`,
    because it is one.
    """


class ArgumentTypeError(ConfigurationError, TypeError):
    """A value has the wrong type for where it was given; the call did nothing.

    Such as a retry policy's ``retry_on`` holding something other than exception
    classes, or a middleware the bus binds per handler called as a plain middleware.
    Also a :class:`TypeError`, because it is one.
    """


class DatabaseMismatchError(ConfigurationError):
    """Stores that must share transactions were not made from one database object.

    Raised when a bus is made with an outbox and an event log that are not both from
    one :class:`messagebus.sqlite.SQLiteDatabase` or
    :class:`messagebus.postgres.PostgresDatabase` (an in-memory log, or two database
    objects, even on one file: two connections are two transactions).
    """


class InvalidURLError(ConfigurationError):
    """A transport or database URL is malformed or names nothing known; nothing connected.

    ``str(error)`` is one line: where the URL came from (an environment variable), the
    URL with any credentials left out, the part that is wrong and why, such as
    ``MESSAGEBUS_DATABASE: 'sqlite:/x.db': path: ...``.

    Attributes:
        url: the URL as shown (credentials replaced by ``***``).
        part: the part that is wrong: ``scheme``, ``host``, ``port``, ``path``,
            ``query``, or ``parameter NAME``.
        reason: what is wrong with it, and what would be right.
        variable: the environment variable the URL was read from, if any.
    """

    def __init__(self, url: str, part: str, reason: str, *, variable: str | None = None) -> None:
        self.url = url
        self.part = part
        self.reason = reason
        self.variable = variable
        prefix = "" if variable is None else f"{variable}: "
        super().__init__(f"{prefix}{url}: {part}: {reason}")


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
    """A body is not CloudEvents JSON of a registered type and version. Never retried.

    Also raised for a header the library reads whose value it cannot parse (the
    ordering sequence header).
    """


class BatchFailedError(MessageBusError):
    """Records of an invocation failed, and the caller asked to hear it as an exception.

    Raised for a direct (SNS or EventBridge) invocation whose record failed, and for an
    SQS batch in which every record failed when ``raise_on_batch_failure`` is set.

    Attributes:
        failed: the failed records' identifiers (SQS message ids; ``"?"`` for direct
            invocations, which have none).
    """

    def __init__(self, failed: list[str]) -> None:
        self.failed = tuple(failed)
        super().__init__(f"{len(failed)} record(s) failed: {', '.join(failed[:3])}")


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


class StoreError(MessageBusError):
    """A store's database refused a call, or the store could not make it understood.

    Raised by the DynamoDB stores (:mod:`messagebus.dynamodb`) for what AWS refuses: a
    missing table, missing permissions or credentials, a request it finds invalid (an
    item over its 400 KB limit). The vendor's exception is the ``__cause__``. (The SQL
    stores let their driver's exceptions through unchanged.)
    """


class StoreUnavailableError(StoreError):
    """The store's database could not be reached, throttled the call, or failed on its side.

    Worth trying again later: the call may or may not have taken effect (a claim that
    timed out may hold its key until the lease ends).
    """


class ProcessNotFoundError(DispatchError, LookupError):
    """A message for a process instance that does not exist, where that is declared an error.

    A process manager's ``handles(..., when_missing="dead-letter")`` (the default) says
    a message of that type must find its instance; one that finds none is a dead letter
    with this reason, never retried (another try finds nothing either).
    """


class ProcessConflictError(MessageBusError):
    """A process instance was changed by another handler run between load and save.

    The run's transaction rolled back, nothing it did is kept; the process manager runs
    the message again at once (a conflict is retried, never dead-lettered unless it
    keeps happening past the manager's ``max_conflicts``).
    """


class IdempotencyError(MessageBusError):
    """The idempotency layer would not run the handler on this message.

    Raised as itself when a store could not claim a key, nor read its record, after
    several tries because the record kept vanishing (a concurrent cleanup); the handler
    did not run, and a retry may succeed.
    """


class IdempotencyKeyReused(IdempotencyError):
    """The idempotency key was used before with a different payload. Never retried.

    Two different intentions were given one key (a client bug, or a key that is not
    unique enough); running the second would return the first one's stored result.
    """


class DuplicateInProgressError(IdempotencyError):
    """Another run holds this key and did not finish within the wait; try again later."""
