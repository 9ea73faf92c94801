"""The SQLite connection admits one thread at a time, whatever anyio's scheduling does."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import pytest

from messagebus._sql._sqlite import SQLiteConnection

pytestmark = pytest.mark.anyio

# How long the waiter keeps the connection, giving a wrongly admitted caller time to
# arrive in its own thread. A bound on a check that must stay negative, not a sleep that
# orders anything: with the fault the caller arrives within microseconds.
GRACE = 0.2


class Calls:
    """Functions to run on the connection that record who entered, and any overlap."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.overlapping: list[str] = []
        self.first_may_leave = threading.Event()
        self.again_entered = threading.Event()
        self._inside = 0
        self._lock = threading.Lock()

    def call(self, name: str) -> Callable[[sqlite3.Connection], None]:
        def run(connection: sqlite3.Connection) -> None:
            with self._lock:
                self._inside += 1
                self.entered.append(name)
                if self._inside > 1:
                    self.overlapping.append(name)
            if name == "again":
                self.again_entered.set()
            try:
                if name == "first":
                    self.first_may_leave.wait()
                if name == "waiter":
                    self.again_entered.wait(GRACE)
                connection.execute("SELECT 1").fetchall()
            finally:
                with self._lock:
                    self._inside -= 1

        return run


async def race(
    connection: SQLiteConnection,
    calls: Calls,
    first_then_again: Callable[[], Coroutine[Any, Any, None]],
    waiter: Callable[[Callable[[sqlite3.Connection], None]], Coroutine[Any, Any, None]],
) -> None:
    """Run ``first_then_again`` with a waiter queued behind its first call; check the order.

    The first call holds the connection until the waiter is queued; then it ends, and
    ``first_then_again`` comes back at once, in the same turn as the hand-over.
    """
    async with anyio.create_task_group() as group:
        group.start_soon(first_then_again)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(waiter, calls.call("waiter"))
        await anyio.wait_all_tasks_blocked()
        calls.first_may_leave.set()
    await connection.aclose()
    assert calls.overlapping == []
    assert calls.entered == ["first", "waiter", "again"]


class TestOneThreadAtATime:
    async def test_a_caller_back_at_once_waits_behind_the_waiter(self, tmp_path: Path) -> None:
        """A task that calls again right after its call ends queues behind the waiter."""
        connection = SQLiteConnection(str(tmp_path / "one.sqlite3"))
        await connection.open()
        calls = Calls()

        async def first_then_again() -> None:
            await connection.run(calls.call("first"))
            await connection.run(calls.call("again"))

        await race(connection, calls, first_then_again, connection.run)

    async def test_a_transaction_holds_out_a_caller_back_at_once(self, tmp_path: Path) -> None:
        """A task beginning again right after its transaction ends queues behind the waiter.

        The window of anyio#1170: ending the transaction hands the connection to the
        waiting task, and in the same turn the first task begins again. With anyio's
        asyncio ``CapacityLimiter`` before 4.14.2 as the mutex, that second transaction
        was admitted too, and two threads ran on the connection ("cannot start a
        transaction within a transaction" at the lowest supported versions); this test
        failed every time there.
        """
        connection = SQLiteConnection(str(tmp_path / "one.sqlite3"))
        await connection.open()
        calls = Calls()

        async def transaction_then_again() -> None:
            async with connection.transaction() as held:
                await held.run(calls.call("first"))
            async with connection.transaction() as held:
                await held.run(calls.call("again"))

        await race(connection, calls, transaction_then_again, connection.write)
