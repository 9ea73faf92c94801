"""A producer killed with SIGKILL after its commit loses nothing: a new relay delivers it."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import anyio
import pytest

from messagebus.outbox import OutboxRelay
from tests.outbox_support import Database, Sink, database

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    return database(str(request.param), request)


async def run_until_killed(db: Database, *args: str, marker: str) -> None:
    """Start the producer, wait until it prints ``marker``, then SIGKILL it."""
    command = [sys.executable, "-m", "tests.outbox_crash", db.kind, db.location, *args]
    async with await anyio.open_process(command, cwd=ROOT) as process:
        assert process.stdout is not None
        seen = ""
        with anyio.fail_after(60):
            while marker not in seen:
                seen += (await process.stdout.receive()).decode()
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL


class TestCrash:
    """What a killed process committed is delivered after a restart; nothing else."""

    async def test_killed_after_commit_before_relaying(self, db: Database) -> None:
        """The committed post stands and a new relay delivers all three messages, in order."""
        await run_until_killed(db, marker="committed")
        assert db.titles() == ["crash"]
        sink = Sink()
        async with db.make() as store:
            assert await OutboxRelay(store, sink).flush() == 3
        assert sink.ids == ["m-0000", "m-0001", "m-0002"]

    async def test_killed_while_holding_the_lease(self, db: Database) -> None:
        """Rows a killed relay had claimed are delivered once its lease has run out."""
        await run_until_killed(db, "claim", marker="claimed")
        sink = Sink()
        async with db.make() as store:
            assert await OutboxRelay(store, sink).flush() == 0  # still leased
        async with db.make(clock=lambda: time.time() + 31.0) as later:
            assert await OutboxRelay(later, sink).flush() == 3
        assert sink.ids == ["m-0000", "m-0001", "m-0002"]
