"""The event log in an SQLite file, shared by every store and process that opens it.

Runs the stdlib :mod:`sqlite3` in worker threads (:mod:`messagebus._sql._sqlite`), so it
works on asyncio and trio alike. Each log object is on one connection, its own or the
one it shares with the other stores of its :class:`~messagebus.sqlite.SQLiteDatabase`;
several objects or processes may append to one file at once.

Table layout (created on first use, idempotently; ``<table>`` defaults to
``messagebus_events``)::

    <table>(position INTEGER PRIMARY KEY, stream TEXT NULL, sequence INTEGER NULL,
            message_id, message_type, body TEXT NOT NULL, recorded_at INTEGER NOT NULL,
            UNIQUE (stream, sequence))
        -- body: the CloudEvents JSON as appended; recorded_at: microseconds since the
        -- Unix epoch, UTC; stream and sequence are NULL for an event in no stream
    <table>_head(id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)
        -- one row: the last position handed out
    <table>_checkpoints(name TEXT PRIMARY KEY, position INTEGER NOT NULL,
                        saved_at INTEGER NOT NULL)
    messagebus_schema(table_name TEXT PRIMARY KEY, version INTEGER NOT NULL)

Positions: an append first moves the head row forward by the batch size, which takes
SQLite's single write lock (``BEGIN IMMEDIATE``); it holds the lock until it commits,
so appends from every connection and process take turns, each batch gets the positions
after the last committed one, and a rolled back append gives its positions back with
its rows. Readers see whole commits only (WAL), hence gapless positions in order. The
head row, not ``max(position)``, is the source, so positions are never reused even if
rows are deleted by hand. Sequences are ``max(sequence) + 1`` within the stream.

Retention: nothing in this API updates or deletes. Deleting old rows with SQL is the
user's own explicit act: positions stay unique (the head row), but a stream whose every
row is gone starts again at sequence 1, and subscribers behind the deleted range skip it.

Limits: errors from SQLite (a lock held longer than the busy timeout, a full disk)
propagate as :mod:`sqlite3` exceptions, unchanged; a cancelled call still finishes its
statement in the worker thread. A schema version newer than this code knows raises
:class:`~messagebus.SchemaVersionError`. Calls after :meth:`~SQLiteEventLog.aclose` raise
:class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._messages import Event, Message
from messagebus._sql._schema import check_table_name
from messagebus._sql._sqlite import SQLiteConnection, create_table
from messagebus._sql._store import SQLStore
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

__all__ = ["SQLiteEventLog"]

SCHEMA_VERSION = 1
"""The layout of the event log tables this code writes; recorded in ``messagebus_schema``."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_LOG = (
    "position INTEGER PRIMARY KEY NOT NULL, stream TEXT, sequence INTEGER, "
    "message_id TEXT NOT NULL, message_type TEXT NOT NULL, body TEXT NOT NULL, "
    "recorded_at INTEGER NOT NULL, UNIQUE (stream, sequence)"
)
_HEAD = "id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1), position INTEGER NOT NULL"
_CHECKPOINTS = (
    "name TEXT PRIMARY KEY NOT NULL, position INTEGER NOT NULL, saved_at INTEGER NOT NULL"
)
_SELECT = "SELECT position, stream, sequence, body, recorded_at FROM"


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


class SQLiteEventLog(SQLStore[SQLiteConnection], Subscribable, UsesCodec):
    """Keeps the event log in tables of an SQLite file; see the module.

    Opens the file, and creates the tables if needed, on first use or on ``async with``.
    Made alone (from a path) it has a connection of its own, which :meth:`aclose` (or
    leaving the ``async with``) closes; made by :meth:`SQLiteDatabase.event_log
    <messagebus.sqlite.SQLiteDatabase.event_log>` it shares the database's, and can
    then append in the units of work of that database's outbox.

    Args:
        path: the database file. Or the database object to be on.
        codec: encodes appended envelopes and decodes them on read; by default the
            codec of the MessageBus the log is given to.
        table: the log table's name; the head and checkpoint tables add suffixes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | SQLiteConnection,
        *,
        codec: WireCodec | None = None,
        table: str = "messagebus_events",
    ) -> None:
        database = path if isinstance(path, SQLiteConnection) else SQLiteConnection(os.fspath(path))
        self._codec = codec
        self._table = check_table_name(table)
        log, head, checkpoints = f'"{table}"', f'"{table}_head"', f'"{table}_checkpoints"'
        self._advance = f"UPDATE {head} SET position = position + ? WHERE id = 1 RETURNING position"
        self._last_sequence = f"SELECT max(sequence) FROM {log} WHERE stream = ?"
        self._insert = (
            f"INSERT INTO {log} (position, stream, sequence, message_id, message_type, body, "
            "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self._read = f"{_SELECT} {log} WHERE position >= ? ORDER BY position LIMIT ?"
        self._read_stream = (
            f"{_SELECT} {log} WHERE stream = ? AND sequence >= ? ORDER BY sequence LIMIT ?"
        )
        self._head = f"SELECT position FROM {head} WHERE id = 1"
        self._on(database, alone=database is not path)
        database.add_set_up(self._set_up)
        self._signal = AppendSignal()
        self._checkpoints = _Checkpoints(self._database, checkpoints)

    async def append(self, envelopes: Sequence[Envelope[Message]]) -> Sequence[LogRecord]:
        """Append ``envelopes`` in order, in one transaction; return their records."""
        events = check_events(envelopes)
        if not events:
            return ()
        bodies = [self.codec.encode(envelope).decode() for envelope in events]
        records = await self._database.write(
            lambda connection: self._insert_rows(connection, events, bodies)
        )
        self._signal.notify()
        return records

    def append_in(
        self, connection: sqlite3.Connection, envelopes: Sequence[Envelope[Message]]
    ) -> Sequence[LogRecord]:
        """Append ``envelopes`` on the caller's connection, in the caller's transaction.

        Blocking: call it from a worker thread, with ``connection`` (to this log's file)
        inside a write transaction (``BEGIN IMMEDIATE``) that the caller commits or rolls
        back, together with its own writes. The log must have been opened first
        (``async with`` or a first call), so that its tables exist. Subscriptions of
        this object learn of the append only when the caller calls
        :meth:`notify_appended` after the commit, or by polling.
        """
        events = check_events(envelopes)
        if not events:
            return ()
        bodies = [self.codec.encode(envelope).decode() for envelope in events]
        return self._insert_rows(connection, events, bodies)

    async def read(self, from_position: int = 1, limit: int = 1000) -> Sequence[LogRecord]:
        """Return up to ``limit`` records from ``from_position`` on, by position."""
        check_read(from_position, limit)
        return await self._select(self._read, (from_position, limit))

    async def read_stream(
        self, stream: str, from_sequence: int = 1, limit: int | None = None
    ) -> Sequence[LogRecord]:
        """Return ``stream``'s records from ``from_sequence`` on, by sequence."""
        check_read(from_sequence, limit)
        return await self._select(
            self._read_stream, (stream, from_sequence, -1 if limit is None else limit)
        )

    async def last_position(self) -> int:
        """Return the position of the last committed record; 0 for an empty log."""
        row = await self._database.run(lambda connection: connection.execute(self._head).fetchone())
        return int(row[0])

    def _insert_rows(
        self, connection: sqlite3.Connection, events: Sequence[Envelope[Event]], bodies: list[str]
    ) -> Sequence[LogRecord]:
        # Moving the head first takes the write lock before anything else is read.
        (end,) = connection.execute(self._advance, (len(events),)).fetchone()
        last = {}
        for stream in dict.fromkeys(envelope.group_key for envelope in events):
            if stream is not None:
                (found,) = connection.execute(self._last_sequence, (stream,)).fetchone()
                if found is not None:
                    last[stream] = found
        now = datetime.now(UTC)
        micros = _micros(now)
        numbers = numbered(events, end - len(events), last)
        connection.executemany(
            self._insert,
            [
                (
                    position,
                    stream,
                    sequence,
                    envelope.message_id,
                    envelope.message_type,
                    body,
                    micros,
                )
                for envelope, body, (position, stream, sequence) in zip(
                    events, bodies, numbers, strict=True
                )
            ],
        )
        return tuple(
            make_record(envelope, position, stream, sequence, now)
            for envelope, (position, stream, sequence) in zip(events, numbers, strict=True)
        )

    async def _select(self, statement: str, params: tuple[object, ...]) -> Sequence[LogRecord]:
        def select(connection: sqlite3.Connection) -> Sequence[LogRecord]:
            rows = connection.execute(statement, params).fetchall()
            # Decoded in the worker thread too, keeping the event loop free.
            return tuple(
                decode_record(self.codec, (*row[:4], _EPOCH + row[4] * _MICROSECOND))
                for row in rows
            )

        return await self._database.run(select)

    def _set_up(self, connection: sqlite3.Connection) -> None:
        for suffix, columns in (("", _LOG), ("_head", _HEAD), ("_checkpoints", _CHECKPOINTS)):
            create_table(
                connection, table=self._table + suffix, version=SCHEMA_VERSION, columns=columns
            )
        connection.execute(f'INSERT OR IGNORE INTO "{self._table}_head" VALUES (1, 0)')


class _Checkpoints:
    """The checkpoint store in the log's file, on the log's connection."""

    def __init__(self, database: SQLiteConnection, table: str) -> None:
        self._database = database
        self._load = f"SELECT position FROM {table} WHERE name = ?"
        self._save = f"INSERT OR REPLACE INTO {table} (name, position, saved_at) VALUES (?, ?, ?)"
        self._reset = f"DELETE FROM {table} WHERE name = ?"

    async def load(self, name: str) -> int | None:
        """Return the last position ``name`` processed, or None."""
        row = await self._database.run(
            lambda connection: connection.execute(self._load, (name,)).fetchone()
        )
        return None if row is None else int(row[0])

    async def save(self, name: str, position: int) -> None:
        """Record that ``name`` has processed everything up to ``position``."""
        params = (name, position, _micros(datetime.now(UTC)))
        await self._database.write(lambda connection: connection.execute(self._save, params))

    async def reset(self, name: str) -> None:
        """Forget ``name``'s position, so that it replays the log from the start."""
        await self._database.write(lambda connection: connection.execute(self._reset, (name,)))
