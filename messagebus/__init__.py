"""messagebus: commands to exactly one handler, events to every subscriber.

The names an application writes live here: messages and envelopes, the bus and its
handler context, the unit of work, the worker, the wire codec and its registry, and
every error the library raises (one tree rooted at :class:`MessageBusError`, drawn in
:mod:`messagebus._errors`). Everything else has one home of its own:

- :mod:`messagebus.middleware`: the middleware that ships (retries, idempotency, unit of
  work, logging, ordering); :mod:`messagebus.retry`: retry policies and backoffs.
- :mod:`messagebus.transports` (``.memory``, ``.sqs``): where messages travel.
- :mod:`messagebus.sqlite`, :mod:`messagebus.postgres`: one database object each, which
  hands out the stores below on one connection or pool.
- :mod:`messagebus.outbox`, :mod:`messagebus.idempotency`, :mod:`messagebus.dead_letters`,
  :mod:`messagebus.eventlog`: the stores, each family's implementations.
- :mod:`messagebus.extension`: the protocols to implement (middleware, transports,
  stores) and the follow-up API for middleware.
- :mod:`messagebus.testing`, :mod:`messagebus.otel`, :mod:`messagebus.metrics`.

Implementation lives in private modules; this one only re-exports.
"""

from messagebus._bus import Fanout, MessageBus
from messagebus._codec import WireCodec
from messagebus._context import Context
from messagebus._dispatch._run import add_message_context, current_envelope
from messagebus._envelope import Envelope
from messagebus._errors import (
    ArgumentTypeError,
    BatchFailedError,
    BusStateError,
    CommandRejected,
    ConfigurationError,
    DatabaseMismatchError,
    DeadLetterNotFoundError,
    DecodeError,
    DeliveryExpiredError,
    DestinationNotFoundError,
    DispatchError,
    DuplicateHandlerError,
    DuplicateInProgressError,
    DuplicateMessageTypeError,
    DuplicateSubscriberError,
    EncodeError,
    IdempotencyError,
    IdempotencyKeyReused,
    InboxConfigurationError,
    InvalidArgumentError,
    InvalidHandlerError,
    InvalidMessageTypeError,
    InvalidURLError,
    MessageBusError,
    MessageKindError,
    MessageTooLargeError,
    NoHandlerError,
    ProcessConflictError,
    ProcessNotFoundError,
    RetriesExhausted,
    SchemaVersionError,
    SendError,
    SequenceGapError,
    SerializationError,
    StoreError,
    StoreUnavailableError,
    TransportError,
    TransportUnavailableError,
    UnsupportedBackendError,
)
from messagebus._messages import Command, Event, Message, wire_name, wire_version
from messagebus._registry import MessageRegistry, Upcaster
from messagebus._schedule import DUE_HEADER, ScheduleId
from messagebus._unit_of_work import UnitOfWork, current_unit_of_work
from messagebus._version import __version__ as __version__
from messagebus._worker import Worker, serve

__all__ = [
    "DUE_HEADER",
    "ArgumentTypeError",
    "BatchFailedError",
    "BusStateError",
    "Command",
    "CommandRejected",
    "ConfigurationError",
    "Context",
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
    "Envelope",
    "Event",
    "Fanout",
    "IdempotencyError",
    "IdempotencyKeyReused",
    "InboxConfigurationError",
    "InvalidArgumentError",
    "InvalidHandlerError",
    "InvalidMessageTypeError",
    "InvalidURLError",
    "Message",
    "MessageBus",
    "MessageBusError",
    "MessageKindError",
    "MessageRegistry",
    "MessageTooLargeError",
    "NoHandlerError",
    "ProcessConflictError",
    "ProcessNotFoundError",
    "RetriesExhausted",
    "ScheduleId",
    "SchemaVersionError",
    "SendError",
    "SequenceGapError",
    "SerializationError",
    "StoreError",
    "StoreUnavailableError",
    "TransportError",
    "TransportUnavailableError",
    "UnitOfWork",
    "UnsupportedBackendError",
    "Upcaster",
    "WireCodec",
    "Worker",
    "add_message_context",
    "current_envelope",
    "current_unit_of_work",
    "serve",
    "wire_name",
    "wire_version",
]
