"""Process instances in an SQLite file, on the outbox's connection.

Table layout (created on first use, idempotently; ``<table>`` defaults to
``messagebus_processes``)::

    <table>(process TEXT, key TEXT,
            state TEXT NULL,              -- the state's JSON; NULL for a tombstone
            state_version INTEGER NOT NULL,
            version INTEGER NOT NULL,     -- 1 when started, +1 at each save
            started_at REAL NOT NULL, updated_at REAL NOT NULL,
            completed_at REAL NULL, expires_at REAL NULL,   -- tombstones only
            PRIMARY KEY (process, key))
    <table>_expires_ix (expires_at)       -- for cleanup()

The contract is :class:`~messagebus.process.ProcessStore`'s. SQLite serialises
writers: a unit of work holds the file's write lock from its ``BEGIN IMMEDIATE``, so an
instance loaded in one cannot change before it commits, and two starts of one key take
turns (the second finds the first's row). The version check on save still guards
against a connection that changed the row outside this contract.
"""

from __future__ import annotations

import os
import sqlite3
import time

from messagebus._clock import TimeSource, wall_time
from messagebus._errors import InvalidArgumentError, ProcessConflictError
from messagebus._sql._schema import check_table_name
from messagebus._sql._sqlite import SQLiteConnection, create_table
from messagebus._sql._store import SQLStore
from messagebus.process._store import ProcessRecord

__all__ = ["SQLiteProcessStore"]

SCHEMA_VERSION = 1
"""The layout of the process table this code writes; recorded in ``messagebus_schema``."""

_TABLE = (
    "process TEXT NOT NULL, key TEXT NOT NULL, state TEXT, "
    "state_version INTEGER NOT NULL, version INTEGER NOT NULL, "
    "started_at REAL NOT NULL, updated_at REAL NOT NULL, "
    "completed_at REAL, expires_at REAL, PRIMARY KEY (process, key)"
)


class SQLiteProcessStore(SQLStore[SQLiteConnection]):
    """Keeps process instances in a table of an SQLite file; see the module.

    Made by :meth:`SQLiteDatabase.processes <messagebus.sqlite.SQLiteDatabase.processes>`
    so that it shares the outbox's connection (its ``*_in`` methods run in the outbox's
    units of work), or alone from a path (for inspection and cleanup).

    Args:
        path: the database file, or the database object to be on.
        table: the table's name (letters, digits and underscores, at most 48).
        clock: seconds since the Unix epoch (``time.time``) or a ``Clock`` (a fake in tests).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | SQLiteConnection,
        *,
        table: str = "messagebus_processes",
        clock: TimeSource = time.time,
    ) -> None:
        database = path if isinstance(path, SQLiteConnection) else SQLiteConnection(os.fspath(path))
        self._table = check_table_name(table)
        self._clock = wall_time(clock)
        quoted = f'"{self._table}"'
        self._select = (
            f"SELECT state, state_version, version, completed_at FROM {quoted} "
            "WHERE process = ? AND key = ?"
        )
        self._start = (
            f"INSERT INTO {quoted} (process, key, state, state_version, version, "
            "started_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT (process, key) DO NOTHING"
        )
        self._save = (
            f"UPDATE {quoted} SET state = ?, state_version = ?, version = version + 1, "
            "updated_at = ? WHERE process = ? AND key = ? AND version = ? "
            "AND completed_at IS NULL"
        )
        self._complete = (
            f"UPDATE {quoted} SET state = NULL, version = version + 1, updated_at = ?, "
            "completed_at = ?, expires_at = ? WHERE process = ? AND key = ? AND version = ? "
            "AND completed_at IS NULL"
        )
        self._cleanup = (
            f"DELETE FROM {quoted} WHERE rowid IN (SELECT rowid FROM {quoted} "
            "WHERE expires_at <= ? LIMIT ?)"
        )
        self._on(database, alone=database is not path)
        self._set_up = self._create_table
        database.add_set_up(self._set_up)

    def _create_table(self, connection: sqlite3.Connection) -> None:
        create_table(
            connection,
            table=self._table,
            version=SCHEMA_VERSION,
            columns=_TABLE,
            indexes=[("expires_ix", "expires_at")],
        )

    def load_in(
        self, connection: sqlite3.Connection, process: str, key: str
    ) -> ProcessRecord | None:
        """Return the instance, or None; the unit of work's write lock holds it."""
        if self._database.set_ups.pending(self._set_up):
            self._set_up(connection)  # first used inside a unit of work
        row = connection.execute(self._select, (process, key)).fetchone()
        return None if row is None else _record(row)

    def start_in(
        self, connection: sqlite3.Connection, process: str, key: str, state: str, state_version: int
    ) -> bool:
        """Insert a new instance at version 1; return False if one exists."""
        now = self._clock()
        cursor = connection.execute(self._start, (process, key, state, state_version, now, now))
        return cursor.rowcount == 1

    def save_in(
        self,
        connection: sqlite3.Connection,
        process: str,
        key: str,
        *,
        state: str,
        state_version: int,
        expected_version: int,
    ) -> None:
        """Store the next version of the state, if the row is at ``expected_version``."""
        cursor = connection.execute(
            self._save, (state, state_version, self._clock(), process, key, expected_version)
        )
        if cursor.rowcount != 1:
            raise ProcessConflictError(_conflict(process, key, expected_version))

    def complete_in(
        self,
        connection: sqlite3.Connection,
        process: str,
        key: str,
        *,
        expected_version: int,
        retention: float,
    ) -> None:
        """Replace the instance by a tombstone kept ``retention`` seconds (store's clock)."""
        now = self._clock()
        keep_until = now + retention
        cursor = connection.execute(
            self._complete, (now, now, keep_until, process, key, expected_version)
        )
        if cursor.rowcount != 1:
            raise ProcessConflictError(_conflict(process, key, expected_version))

    async def get(self, process: str, key: str) -> ProcessRecord | None:
        """Return the instance as committed, or None."""
        row = await self._database.run(
            lambda connection: connection.execute(self._select, (process, key)).fetchone()
        )
        return None if row is None else _record(row)

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired tombstones; return how many went."""
        if limit < 0:
            raise InvalidArgumentError(f"limit must not be negative: {limit}")
        deleted: int = await self._database.write(
            lambda connection: connection.execute(self._cleanup, (self._clock(), limit)).rowcount
        )
        return deleted


def _record(row: tuple[str | None, int, int, float | None]) -> ProcessRecord:
    state, state_version, version, completed_at = row
    return ProcessRecord(state, state_version, version, completed_at is not None)


def _conflict(process: str, key: str, expected_version: int) -> str:
    return (
        f"process {process!r} instance {key!r} is no longer at version {expected_version} "
        "(changed or completed by another run)"
    )
