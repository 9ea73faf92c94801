"""The envelope: one message plus the metadata that travels with it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from time import time_ns
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from messagebus._errors import ArgumentTypeError, MessageKindError
from messagebus._ids import new_message_id
from messagebus._messages import Command, Message

__all__ = ["Envelope", "lazy_envelope", "wire_envelope"]

M_co = TypeVar("M_co", bound=Message, covariant=True)

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class Envelope(Generic[M_co]):
    """A message and its metadata. Treat it as immutable: :meth:`replace` makes a changed copy.

    Ids cost time to make, and most dispatches never look at them, so ``message_id`` is
    made the first time something reads it (a middleware, a log line, a follow-up
    message, a transport) and never changes after that. A follow-up message's envelope
    takes ``correlation_id`` from the envelope of the message being handled and sets
    ``causation_id`` to that message's id; a root envelope's ``correlation_id`` is its
    own ``message_id``.

    Attributes:
        message: the Command or Event itself.
        headers: free-form text metadata (str -> str); empty unless given.
        idempotency_key: the key idempotency middleware deduplicates on, if the sender
            set one; otherwise deduplication uses ``message_id``.
        group_key: the ordering key: messages with one key are delivered in order where
            the transport can (SQS FIFO MessageGroupId; the event log's stream).
        attempt: 1 on first delivery, increased by each retry or redelivery.
    """

    __slots__ = (
        "_causation_id",
        "_correlation_id",
        "_message_id",
        "_parent",
        "_timestamp_ns",
        "attempt",
        "group_key",
        "headers",
        "idempotency_key",
        "message",
    )

    message: M_co
    headers: Mapping[str, str]
    idempotency_key: str | None
    group_key: str | None
    attempt: int

    def __init__(
        self,
        message: M_co,
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        timestamp: datetime | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        group_key: str | None = None,
        attempt: int = 1,
        parent: Envelope[Message] | None = None,
    ) -> None:
        """Wrap ``message``; every field left out is made lazily or takes its default.

        ``parent`` is the envelope of the message being handled when this one was
        produced: it supplies ``correlation_id`` and ``causation_id`` unless given.
        """
        if not isinstance(message, Message):
            raise MessageKindError(f"an envelope carries a Command or an Event, not {message!r}")
        self.message = message
        self._message_id = message_id
        self._correlation_id = correlation_id
        self._causation_id = causation_id
        self._parent = parent
        self._timestamp_ns = (
            time_ns() if timestamp is None else int(timestamp.timestamp() * 1_000_000) * 1000
        )
        self.headers = _NO_HEADERS if headers is None else MappingProxyType(dict(headers))
        self.idempotency_key = idempotency_key
        self.group_key = group_key
        self.attempt = attempt

    @property
    def message_id(self) -> str:
        """The id of this message (UUIDv7 text), made on first read."""
        message_id = self._message_id
        if message_id is None:
            message_id = self._message_id = new_message_id()
        return message_id

    @property
    def correlation_id(self) -> str:
        """The id shared by every message of one conversation: its root's message id."""
        correlation_id = self._correlation_id
        if correlation_id is None:
            parent = self._parent
            correlation_id = parent.correlation_id if parent is not None else self.message_id
            self._correlation_id = correlation_id
        return correlation_id

    @property
    def causation_id(self) -> str | None:
        """The id of the message whose handler produced this one; None for a root."""
        causation_id = self._causation_id
        if causation_id is None and self._parent is not None:
            causation_id = self._causation_id = self._parent.message_id
        return causation_id

    @property
    def timestamp(self) -> datetime:
        """When the envelope was made (UTC), to the microsecond."""
        return datetime.fromtimestamp(self._timestamp_ns // 1000 / 1_000_000, tz=UTC)

    @property
    def message_type(self) -> str:
        """The message type's wire name."""
        return self.message.__message_name__

    @property
    def message_version(self) -> int:
        """The message type's wire version."""
        return self.message.__message_version__

    @property
    def kind(self) -> str:
        """``"command"`` or ``"event"``."""
        return "command" if isinstance(self.message, Command) else "event"

    def replace(self, **changes: Any) -> Envelope[M_co]:
        """Return a copy with ``changes`` applied; ids not changed stay the same.

        Accepts the keyword arguments of the constructor (``parent`` excepted); for
        example ``envelope.replace(attempt=envelope.attempt + 1)``.
        """
        fields: dict[str, Any] = {
            "message_id": self.message_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "timestamp": None,
            "headers": self.headers,
            "idempotency_key": self.idempotency_key,
            "group_key": self.group_key,
            "attempt": self.attempt,
        }
        unknown = changes.keys() - fields.keys() - {"message"}
        if unknown:
            raise ArgumentTypeError(f"Envelope.replace() got unknown fields: {sorted(unknown)}")
        message = changes.pop("message", self.message)
        fields.update(changes)
        copy = Envelope(message, **fields)
        if "timestamp" not in changes:
            copy._timestamp_ns = self._timestamp_ns
        return copy

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.message,
            self.message_id,
            self.correlation_id,
            self.causation_id,
            self._timestamp_ns // 1000,  # the documented precision, which the wire keeps
            dict(self.headers),
            self.idempotency_key,
            self.group_key,
            self.attempt,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # equal envelopes may hold unhashable headers

    def __repr__(self) -> str:
        return (
            f"Envelope({self.message!r}, message_id={self.message_id!r}, "
            f"correlation_id={self.correlation_id!r}, causation_id={self.causation_id!r}, "
            f"timestamp={self.timestamp.isoformat()!r}, headers={dict(self.headers)!r}, "
            f"idempotency_key={self.idempotency_key!r}, group_key={self.group_key!r}, "
            f"attempt={self.attempt!r})"
        )


class _LazyEnvelope(Envelope[Any]):
    """An :class:`Envelope` made by :func:`lazy_envelope`: the same object, cheaper to make.

    Calling a class whose ``__init__`` is ``object.__init__`` costs about 700 fewer
    instructions than ``object.__new__(Envelope)`` (whose argument checks are the dear
    part), measured under callgrind; a middleware chain makes one per message.
    """

    __slots__ = ()
    __init__ = object.__init__  # the fields are set by lazy_envelope


def lazy_envelope(message: Message, parent: Envelope[Message] | None) -> Envelope[Message]:
    """Return a default envelope for ``message``, caused by ``parent`` if given.

    The bus's own constructor for the envelopes it makes per dispatch: the same result
    as ``Envelope(message, parent=parent)`` without the keyword handling and checks,
    which cost more than the stores themselves on the hot path.
    """
    envelope: Envelope[Message] = _LazyEnvelope()
    envelope.message = message
    envelope._message_id = None
    envelope._correlation_id = None
    envelope._causation_id = None
    envelope._parent = parent
    envelope._timestamp_ns = time_ns()
    envelope.headers = _NO_HEADERS
    envelope.idempotency_key = None
    envelope.group_key = None
    envelope.attempt = 1
    return envelope


class _WireEnvelope(Envelope[Message]):
    """An :class:`Envelope` made by :func:`wire_envelope`: its timestamp turned lazily.

    Turning the decoded ``datetime`` into nanoseconds costs a quarter of a small
    message's decode, and most handlers never read the timestamp: the datetime is kept
    and turned on the first read, by the same formula as ``Envelope()``'s, so the two
    agree to the nanosecond.
    """

    __slots__ = ("_ns", "_time")
    __init__ = object.__init__  # the fields are set by wire_envelope

    _ns: int | None
    _time: datetime

    @property
    def _timestamp_ns(self) -> int:
        ns = self._ns
        if ns is None:
            ns = self._ns = int(self._time.timestamp() * 1_000_000) * 1000
        return ns

    @_timestamp_ns.setter
    def _timestamp_ns(self, value: int) -> None:
        self._ns = value


def wire_envelope(
    message: Message,
    *,
    message_id: str,
    correlation_id: str | None,
    causation_id: str | None,
    timestamp: datetime,
    headers: Mapping[str, str] | None,
    idempotency_key: str | None,
    group_key: str | None,
    attempt: int,
) -> Envelope[Message]:
    """Return the envelope of a decoded message: ``Envelope(message, ...)``, for less.

    The codec's constructor: its values are checked already (types, a timestamp with an
    offset), so the keyword handling of ``Envelope()`` is skipped, half of a small
    message's decode (benchmarks/codec.py).
    """
    envelope: _WireEnvelope = _WireEnvelope()
    envelope.message = message
    envelope._message_id = message_id
    envelope._correlation_id = correlation_id
    envelope._causation_id = causation_id
    envelope._parent = None
    envelope._ns = None
    envelope._time = timestamp
    envelope.headers = _NO_HEADERS if headers is None else MappingProxyType(dict(headers))
    envelope.idempotency_key = idempotency_key
    envelope.group_key = group_key
    envelope.attempt = attempt
    return envelope
