"""messagebus: commands to exactly one handler, events to every subscriber.

The public names live here; everything else is in private modules.
"""

from messagebus._bus import Fanout, MessageBus
from messagebus._codec import WireCodec
from messagebus._context import Context, add_message_context, current_envelope
from messagebus._envelope import Envelope
from messagebus._errors import (
    BusStateError,
    CommandRejected,
    ConfigurationError,
    DeadLetterNotFoundError,
    DecodeError,
    DispatchError,
    DuplicateHandlerError,
    DuplicateInProgressError,
    DuplicateMessageTypeError,
    DuplicateSubscriberError,
    EncodeError,
    IdempotencyError,
    IdempotencyKeyReused,
    InvalidHandlerError,
    InvalidMessageTypeError,
    MessageBusError,
    MessageKindError,
    NoHandlerError,
    RetriesExhausted,
    SerializationError,
)
from messagebus._handlers import HandlerInfo
from messagebus._messages import Command, Event, Message, wire_name, wire_version
from messagebus._middleware import CallNext, HandlerAwareMiddleware, Middleware
from messagebus._registry import MessageRegistry, Upcaster
from messagebus._retry_policy import (
    NEVER_RETRIED,
    Attempt,
    Decision,
    Discard,
    ExponentialBackoff,
    FixedBackoff,
    GiveUp,
    Retry,
    RetryPolicy,
)
from messagebus.dead_letters import DeadLetter, DeadLetterStore, InMemoryDeadLetterStore

__all__ = [
    "NEVER_RETRIED",
    "Attempt",
    "BusStateError",
    "CallNext",
    "Command",
    "CommandRejected",
    "ConfigurationError",
    "Context",
    "DeadLetter",
    "DeadLetterNotFoundError",
    "DeadLetterStore",
    "Decision",
    "DecodeError",
    "Discard",
    "DispatchError",
    "DuplicateHandlerError",
    "DuplicateInProgressError",
    "DuplicateMessageTypeError",
    "DuplicateSubscriberError",
    "EncodeError",
    "Envelope",
    "Event",
    "ExponentialBackoff",
    "Fanout",
    "FixedBackoff",
    "GiveUp",
    "HandlerAwareMiddleware",
    "HandlerInfo",
    "IdempotencyError",
    "IdempotencyKeyReused",
    "InMemoryDeadLetterStore",
    "InvalidHandlerError",
    "InvalidMessageTypeError",
    "Message",
    "MessageBus",
    "MessageBusError",
    "MessageKindError",
    "MessageRegistry",
    "Middleware",
    "NoHandlerError",
    "RetriesExhausted",
    "Retry",
    "RetryPolicy",
    "SerializationError",
    "Upcaster",
    "WireCodec",
    "add_message_context",
    "current_envelope",
    "wire_name",
    "wire_version",
]
