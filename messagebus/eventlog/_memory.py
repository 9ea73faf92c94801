"""The event log in this process's memory, for development and tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus.eventlog._record import (
    LogRecord,
    UsesCodec,
    check_events,
    check_read,
    decode_record,
    make_record,
    numbered,
)
from messagebus.eventlog._subscription import AppendSignal, Subscribable

__all__ = ["InMemoryCheckpointStore", "InMemoryEventLog"]

_Row = tuple[int, str | None, int | None, bytes, datetime]


class InMemoryCheckpointStore:
    """Checkpoints in a dictionary; same limits as :class:`InMemoryEventLog`."""

    def __init__(self) -> None:
        self._positions: dict[str, int] = {}

    async def load(self, name: str) -> int | None:
        """Return the last position ``name`` processed, or None."""
        return self._positions.get(name)

    async def save(self, name: str, position: int) -> None:
        """Record that ``name`` has processed everything up to ``position``."""
        self._positions[name] = position

    async def reset(self, name: str) -> None:
        """Forget ``name``'s position, so that it replays the log from the start."""
        self._positions.pop(name, None)


class InMemoryEventLog(Subscribable, UsesCodec):
    """Keeps the log in a list in this process.

    Limits: nothing survives the process and nothing is shared with other processes
    (or with another ``InMemoryEventLog``); nothing bounds its size. Bodies are kept
    encoded and decoded on every read, as the SQL logs do, so upcasters and codec
    errors behave alike. Task-safe within one event loop: no method awaits while it
    reads or changes the list, so each append is atomic and positions are gapless.

    Args:
        codec: encodes appended envelopes and decodes them on read; by default the
            codec of the MessageBus the log is given to.
    """

    def __init__(self, *, codec: WireCodec | None = None) -> None:
        self._codec = codec
        self._rows: list[_Row] = []  # the row at index i has position i + 1
        self._streams: dict[str, list[int]] = {}  # stream -> positions, by sequence
        self._signal = AppendSignal()
        self._checkpoints = InMemoryCheckpointStore()

    async def append(self, envelopes: Sequence[Envelope[Message]]) -> Sequence[LogRecord]:
        """Append ``envelopes`` in order, atomically; return their records."""
        events = check_events(envelopes)
        bodies = [self.codec.encode(envelope) for envelope in events]  # all or nothing
        last = {
            stream: len(self._streams[stream])
            for stream in {envelope.group_key for envelope in events}
            if stream is not None and stream in self._streams
        }
        now = datetime.now(UTC)
        records = []
        for envelope, body, (position, stream, sequence) in zip(
            events, bodies, numbered(events, len(self._rows), last), strict=True
        ):
            self._rows.append((position, stream, sequence, body, now))
            if stream is not None:
                self._streams.setdefault(stream, []).append(position)
            records.append(make_record(envelope, position, stream, sequence, now))
        if records:
            self._signal.notify()
        return tuple(records)

    async def read(self, from_position: int = 1, limit: int = 1000) -> Sequence[LogRecord]:
        """Return up to ``limit`` records from ``from_position`` on, by position."""
        check_read(from_position, limit)
        return tuple(map(self._record, self._rows[from_position - 1 : from_position - 1 + limit]))

    async def read_stream(
        self, stream: str, from_sequence: int = 1, limit: int | None = None
    ) -> Sequence[LogRecord]:
        """Return ``stream``'s records from ``from_sequence`` on, by sequence."""
        check_read(from_sequence, limit)
        positions = self._streams.get(stream, [])[from_sequence - 1 :]
        if limit is not None:
            positions = positions[:limit]
        return tuple(self._record(self._rows[position - 1]) for position in positions)

    async def last_position(self) -> int:
        """Return the position of the last record; 0 for an empty log."""
        return len(self._rows)

    def _record(self, row: _Row) -> LogRecord:
        return decode_record(self.codec, row)
