"""The process store checks catch broken stores: each fault fails the check for it.

The faulty store is the SQLite process store with one statement changed; with no fault
switched on it passes every check, so each failure below is the fault's doing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest

from messagebus.process import SQLiteProcessStore
from messagebus.sqlite import SQLiteDatabase
from messagebus.testing import (
    PROCESS_CHECKS,
    NotApplicable,
    ProcessCheck,
    ProcessHarness,
    ProcessStores,
    check_process_start_and_load,
    check_process_store,
    check_process_timeout_after_completion,
    check_process_tombstone_retention,
    check_process_version_check,
)

pytestmark = pytest.mark.anyio


class FaultyProcessStore(SQLiteProcessStore):
    """An SQLite process store with the named faults in its statements.

    - ``start-overwrites``: a start replaces an existing instance (and says it started).
    - ``no-version-check``: a save ignores the version the caller loaded.
    - ``complete-deletes``: completion deletes the row, leaving no tombstone.
    - ``cleanup-early``: cleanup deletes every tombstone, expired or not.
    """

    def __init__(
        self, database: SQLiteDatabase, clock: Callable[[], float], faults: Iterable[str]
    ) -> None:
        super().__init__(database, clock=clock)
        faults = set(faults)
        table = '"messagebus_processes"'
        if "start-overwrites" in faults:
            self._start = (
                f"INSERT OR REPLACE INTO {table} (process, key, state, state_version, "
                "version, started_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)"
            )
        if "no-version-check" in faults:
            self._save = self._save.replace("AND version = ?", "AND (version = ? OR 1)")
        if "complete-deletes" in faults:
            self._complete = (
                f"DELETE FROM {table} WHERE ? + ? + ? IS NOT NULL AND process = ? AND key = ? "
                "AND version = ?"
            )
        if "cleanup-early" in faults:
            self._cleanup = (
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                "WHERE ? IS NOT NULL AND expires_at IS NOT NULL LIMIT ?)"
            )


def faulty(path: Path, *faults: str) -> ProcessHarness:
    """A harness on ``path`` whose process store has ``faults``."""

    @asynccontextmanager
    async def open_stores(clock: Callable[[], float]) -> AsyncIterator[ProcessStores]:
        database = SQLiteDatabase(path)
        async with database:
            yield ProcessStores(
                FaultyProcessStore(database, clock, faults),
                database.outbox(clock=clock),
                database.idempotency(clock=clock),
            )

    return ProcessHarness(open_stores)


class TestFaultsAreCaught:
    """Each fault fails the check of the rule it breaks, naming what went wrong."""

    async def test_the_faulty_store_without_faults_passes(self, tmp_path: Path) -> None:
        """No fault switched on: every check passes, none is moot."""
        paths = (tmp_path / f"db-{n}.sqlite3" for n in range(len(PROCESS_CHECKS)))
        assert await check_process_store(lambda: faulty(next(paths))) == []

    @pytest.mark.parametrize(
        ("fault", "check", "message"),
        [
            (
                "start-overwrites",
                check_process_start_and_load,
                "start_in of an existing instance returned True",
            ),
            (
                "no-version-check",
                check_process_version_check,
                "a save at a stale version did not raise ProcessConflictError",
            ),
            (
                "complete-deletes",
                check_process_tombstone_retention,
                "after completion get returned None",
            ),
            (
                "complete-deletes",
                check_process_timeout_after_completion,
                "the late timeout was dead-lettered",
            ),
            (
                "cleanup-early",
                check_process_tombstone_retention,
                "cleanup deleted 4 tombstones before any expired",
            ),
        ],
    )
    async def test_fault(
        self, tmp_path: Path, fault: str, check: ProcessCheck, message: str
    ) -> None:
        """The check for the rule the fault breaks fails, and says so."""
        with pytest.raises(AssertionError, match=message):
            await check(faulty(tmp_path / "db.sqlite3", fault))

    async def test_check_process_store_names_the_failing_check(self, tmp_path: Path) -> None:
        """Run together, the first failing check's name leads the message."""
        paths = (tmp_path / f"db-{n}.sqlite3" for n in range(len(PROCESS_CHECKS)))
        with pytest.raises(AssertionError, match=r"^check_process_version_check: "):
            await check_process_store(lambda: faulty(next(paths), "no-version-check"))


class TestStoresWithTheirOwnTime:
    """A store that keeps its own time is spared the checks that move time."""

    async def test_the_time_moving_checks_are_not_applicable(self, tmp_path: Path) -> None:
        """takes_clock=False: NotApplicable before the check touches the store."""
        harness = attrs.evolve(faulty(tmp_path / "db.sqlite3"), takes_clock=False)
        paths = (tmp_path / f"db-{n}.sqlite3" for n in range(len(PROCESS_CHECKS)))
        moot = await check_process_store(
            lambda: attrs.evolve(faulty(next(paths)), takes_clock=False)
        )
        assert moot == [
            "check_process_tombstone_retention",
            "check_process_timeout_after_completion",
            "check_process_crash_between_commit_and_relay",
        ]
        with pytest.raises(NotApplicable, match="takes_clock is False"):
            await check_process_tombstone_retention(harness)
