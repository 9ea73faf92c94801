"""The log record, and how an appended envelope becomes one.

Streams: an event's stream is its envelope's ``group_key``. Within a stream each event
gets the next ``sequence`` (1, 2, 3, ...). An event without a ``group_key`` belongs to no
stream: its record's ``stream`` and ``sequence`` are None, it has only a global
position, and :meth:`~messagebus.extension.EventLog.read_stream` never returns it.

The sequence travels on the envelope too: every record's envelope of a stream carries
the header :data:`SEQUENCE_HEADER` (``"sequence"``) set to ``str(record.sequence)``,
whatever the appended envelope had there, so that a subscriber that receives it later
(through a transport, out of order) can put it back in order with a
:class:`~messagebus.eventlog.Resequencer`. The stored body is the envelope as it was
appended; the header is added when a record is made, on append and on every read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._errors import ConfigurationError, InvalidArgumentError, MessageKindError
from messagebus._messages import Event, Message

__all__ = [
    "SEQUENCE_HEADER",
    "LogRecord",
    "check_events",
    "check_read",
    "decode_record",
    "make_record",
    "numbered",
]

SEQUENCE_HEADER = "sequence"
"""The envelope header holding an event's sequence in its stream (decimal text)."""


@attrs.frozen
class LogRecord:
    """One event as the log keeps it.

    Attributes:
        position: its place in the whole log: 1 for the first event, then each next
            integer, in the order appends committed, with no gaps.
        stream: the envelope's ``group_key``, or None for an event in no stream.
        sequence: its place in its stream (1, 2, ...), or None when ``stream`` is None.
        envelope: the event, decoded through the log's codec (so upcasters apply), with
            the :data:`SEQUENCE_HEADER` header when it is in a stream.
        recorded_at: when the append ran (UTC, to the microsecond).
    """

    position: int
    stream: str | None
    sequence: int | None
    envelope: Envelope[Event]
    recorded_at: datetime


def check_events(envelopes: Sequence[Envelope[Message]]) -> Sequence[Envelope[Event]]:
    """Return ``envelopes`` if each carries an Event; raise MessageKindError otherwise."""
    for envelope in envelopes:
        if not isinstance(envelope.message, Event):
            raise MessageKindError(
                f"the event log keeps events only, not {type(envelope.message).__qualname__}"
            )
    return envelopes  # type: ignore[return-value]  # checked above, item by item


def check_read(start: int, limit: int | None) -> None:
    """Refuse a read from before 1 or with a negative limit (InvalidArgumentError)."""
    if start < 1:
        raise InvalidArgumentError(f"positions and sequences start at 1, not {start}")
    if limit is not None and limit < 0:
        raise InvalidArgumentError(f"limit must not be negative: {limit}")


def make_record(
    envelope: Envelope[Event],
    position: int,
    stream: str | None,
    sequence: int | None,
    recorded_at: datetime,
) -> LogRecord:
    """Return the record of ``envelope``, with its sequence header if it has a sequence."""
    if sequence is not None:
        envelope = envelope.replace(headers={**envelope.headers, SEQUENCE_HEADER: str(sequence)})
    return LogRecord(position, stream, sequence, envelope, recorded_at)


def decode_record(
    codec: WireCodec, row: tuple[int, str | None, int | None, bytes | str, datetime]
) -> LogRecord:
    """Return the record of a stored ``(position, stream, sequence, body, recorded_at)``."""
    position, stream, sequence, body, recorded_at = row
    envelope: Envelope[Event] = codec.decode(body)  # type: ignore[assignment]  # events only go in
    return make_record(envelope, position, stream, sequence, recorded_at)


def numbered(
    envelopes: Sequence[Envelope[Event]], head: int, last: dict[str, int]
) -> list[tuple[int, str | None, int | None]]:
    """Return ``(position, stream, sequence)`` for each envelope of a batch, in order.

    ``head`` is the log's last position before the batch; ``last`` maps each stream of
    the batch that has events already to its last sequence, and is updated in place.
    """
    numbers: list[tuple[int, str | None, int | None]] = []
    for offset, envelope in enumerate(envelopes, start=1):
        stream = envelope.group_key
        sequence = None
        if stream is not None:
            sequence = last[stream] = last.get(stream, 0) + 1
        numbers.append((head + offset, stream, sequence))
    return numbers


class UsesCodec:
    """The codec a log encodes and decodes with: its own, or lent by its bus.

    A log made without ``codec=`` takes the codec of the :class:`~messagebus.MessageBus`
    it is given to (``MessageBus(event_log=log)``), so it knows the bus's types.
    """

    _codec: WireCodec | None

    @property
    def codec(self) -> WireCodec:
        """The codec; raises :class:`~messagebus.ConfigurationError` if none was given yet."""
        if self._codec is None:
            raise ConfigurationError(
                "this event log has no codec: pass codec=, or give the log to a MessageBus"
            )
        return self._codec

    @codec.setter
    def codec(self, codec: WireCodec) -> None:
        self._codec = codec

    def lend_codec(self, codec: WireCodec) -> None:
        """Use ``codec`` (its bus's) unless the log was given one of its own."""
        if self._codec is None:
            self._codec = codec
