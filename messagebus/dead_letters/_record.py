"""The dead letter record: one message one handler gave up on, with why and when."""

from __future__ import annotations

import json
import traceback
from datetime import UTC, datetime

import attrs
import msgspec

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._errors import EncodeError, RetriesExhausted
from messagebus._ids import new_message_id
from messagebus._messages import Message

__all__ = ["DeadLetter"]


@attrs.frozen
class DeadLetter:
    """One message one handler gave up on, kept as data.

    Attributes:
        id: this record's id (UUIDv7 text).
        handler: the name of the handler or subscriber that failed.
        message_type: the message's wire name.
        message_id: the message's id.
        correlation_id: the conversation the message belongs to.
        body: the envelope as the handler last saw it, as CloudEvents JSON text (see
            :class:`~messagebus.WireCodec`); decode it with the bus's codec.
        error_type: the exception's qualified class name, such as ``"smtplib.SMTPError"``.
        error_message: ``str()`` of the exception.
        traceback: the formatted traceback of the last failure.
        attempts: how many times the handler ran on this message.
        first_failed_at: when the first attempt failed (UTC).
        last_failed_at: when the last attempt failed (UTC).
    """

    id: str
    handler: str
    message_type: str
    message_id: str
    correlation_id: str
    body: str = attrs.field(repr=False)
    error_type: str
    error_message: str
    traceback: str = attrs.field(repr=False)
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime

    @classmethod
    def from_failure(
        cls, codec: WireCodec, envelope: Envelope[Message], handler: str, exc: BaseException
    ) -> DeadLetter:
        """Record ``exc`` raised by ``handler`` on ``envelope``, failing now.

        A :class:`~messagebus.RetriesExhausted` is unwrapped: the record names the last
        real error, and takes the attempt count and first failure time from it.
        """
        now = datetime.now(UTC)
        attempts, first_failed_at = envelope.attempt, now
        if isinstance(exc, RetriesExhausted) and exc.__cause__ is not None:
            attempts, first_failed_at = exc.attempts, exc.first_failed_at
            exc = exc.__cause__
        try:
            body = codec.encode(envelope).decode()
        except EncodeError as error:
            # Keep what can be kept: the record must exist even if it cannot be replayed.
            body = json.dumps({"encodeerror": str(error), "repr": repr(envelope.message)})
        return cls._of(
            message_type=envelope.message_type,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            body=body,
            handler=handler,
            exc=exc,
            attempts=attempts,
            first_failed_at=first_failed_at,
            now=now,
        )

    @classmethod
    def from_undecodable(cls, body: bytes, queue: str, exc: BaseException) -> DeadLetter:
        """Record a body from ``queue`` that did not decode (``exc`` says why), failing now.

        Whatever of the CloudEvents ids the body has is kept (``"?"`` where absent); the
        handler is ``"<decode:QUEUE>"``. The body is kept as text (undecodable bytes
        and NUL characters replaced), so it can be read, but :meth:`MessageBus.replay` raises
        :class:`~messagebus.DecodeError` on it until its type is registered.
        """
        # NUL cannot be stored in PostgreSQL text; the body stays readable without it.
        text = body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        try:
            event = msgspec.json.decode(text)
        except (msgspec.DecodeError, RecursionError):  # any body at all reaches this
            event = None
        fields = event if isinstance(event, dict) else {}

        def field(key: str) -> str:
            value = fields.get(key)
            return value if isinstance(value, str) else "?"

        now = datetime.now(UTC)
        return cls._of(
            message_type=field("type"),
            message_id=field("id"),
            correlation_id=field("correlationid"),
            body=text,
            handler=f"<decode:{queue}>",
            exc=exc,
            attempts=1,
            first_failed_at=now,
            now=now,
        )

    @classmethod
    def _of(
        cls,
        *,
        message_type: str,
        message_id: str,
        correlation_id: str,
        body: str,
        handler: str,
        exc: BaseException,
        attempts: int,
        first_failed_at: datetime,
        now: datetime,
    ) -> DeadLetter:
        error_class = type(exc)
        return cls(
            id=new_message_id(),
            handler=handler,
            message_type=message_type,
            message_id=message_id,
            correlation_id=correlation_id,
            body=body,
            error_type=f"{error_class.__module__}.{error_class.__qualname__}",
            error_message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            attempts=attempts,
            first_failed_at=first_failed_at,
            last_failed_at=now,
        )
