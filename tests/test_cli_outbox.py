"""`messagebus outbox status|list|requeue|flush` on real SQLite and PostgreSQL outboxes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import anyio
import attrs
import pytest

from messagebus.outbox import OutboxMessage, PostgresOutbox, Settlement, SQLiteOutbox
from messagebus.transports import Destination
from tests import outbox_app
from tests.conftest import Cli
from tests.messages import PostPublished


def message(id_: str, age: float = 0.0) -> OutboxMessage:
    return OutboxMessage(
        id=id_,
        destination=Destination.queue("billing"),
        body=b"{}",
        group_key=None,
        created_at=time.time() - age,
    )


async def seed(store: SQLiteOutbox | PostgresOutbox) -> None:
    """Two pending rows (the oldest a minute old), one dead, one sent."""
    async with store.transaction() as transaction:
        transaction.add([message("p-1", age=60.0), message("p-2"), message("d-1"), message("s-1")])
    await store.claim("seeder", lease=30.0, limit=2, ids=["d-1", "s-1"])
    await store.settle("seeder", Settlement(sent=["s-1"], dead=[("d-1", "SendError: refused")]))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An outbox holding the rows `seed` writes; its --store URL."""
    if request.param == "sqlite":
        url = str(tmp_path / "outbox.sqlite3")
        store: SQLiteOutbox | PostgresOutbox = SQLiteOutbox(url)
    else:
        dsn: str = request.getfixturevalue("postgres_dsn")
        schema: str = request.getfixturevalue("postgres_schema")
        url = f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"
        store = PostgresOutbox(url)

    async def fill() -> None:
        async with store:
            await seed(store)

    anyio.run(fill)
    return url


class TestStatus:
    """outbox status counts the rows."""

    def test_scheduled_rows_are_counted_apart(self, cli: Cli, tmp_path: Path) -> None:
        """A row not due yet is scheduled, not pending, in text and in JSON."""
        path = tmp_path / "outbox.sqlite3"
        due = time.time() + 3600

        async def fill() -> None:
            async with SQLiteOutbox(path) as store, store.transaction() as transaction:
                transaction.add([attrs.evolve(message("later"), due_at=due), message("now")])

        anyio.run(fill)
        status, out, _ = cli("outbox", "status", "--store", str(path))
        assert status == 0
        assert out.splitlines()[:5] == [
            "pending         1",
            "in flight       0",
            "dead            0",
            "sent            0",
            "scheduled       1",
        ]
        status, out, _ = cli("outbox", "status", "--store", str(path), "--json")
        assert (json.loads(out)["scheduled"], json.loads(out)["pending"]) == (1, 1)

    def test_text(self, cli: Cli, store_url: str) -> None:
        """One count a line, then the oldest pending row's age, the values aligned."""
        status, out, _ = cli("outbox", "status", "--store", store_url)
        assert status == 0
        lines = out.splitlines()
        assert lines[:5] == [
            "pending         2",
            "in flight       0",
            "dead            1",
            "sent            1",
            "scheduled       0",
        ]
        assert re.fullmatch(r"oldest pending  6\d\.\d s ago", lines[5])

    def test_json(self, cli: Cli, store_url: str) -> None:
        """--json: one object, for monitoring."""
        status, out, _ = cli("outbox", "status", "--store", store_url, "--json")
        assert status == 0
        counts = json.loads(out)
        assert counts | {"oldest_pending_age": None} == {
            "pending": 2,
            "in_flight": 0,
            "dead": 1,
            "sent": 1,
            "scheduled": 0,
            "oldest_pending_age": None,
        }
        assert 60 <= counts["oldest_pending_age"] < 120

    def test_empty(self, cli: Cli, tmp_path: Path) -> None:
        """No pending rows: no age."""
        path = tmp_path / "empty.sqlite3"

        async def create() -> None:
            async with SQLiteOutbox(path) as store:
                await store.status()

        anyio.run(create)
        status, out, _ = cli("outbox", "status", "--store", f"sqlite:///{path}")
        assert (status, out.splitlines()[-1]) == (0, "oldest pending  none")


class TestList:
    """outbox list shows the dead rows."""

    def test_text(self, cli: Cli, store_url: str) -> None:
        """A header, then id, destination, attempts and the last error; the count on stderr."""
        status, out, err = cli("outbox", "list", "--store", store_url)
        assert status == 0
        assert out.splitlines() == [
            "id   destination    attempts  last error",
            "d-1  queue:billing         1  SendError: refused",
        ]
        assert err.strip() == "1 dead message(s)"

    def test_json(self, cli: Cli, store_url: str) -> None:
        """--json: one object per row."""
        status, out, _ = cli("outbox", "list", "--store", store_url, "--json", "--limit", "5")
        assert status == 0
        (row,) = [json.loads(line) for line in out.splitlines()]
        assert row["id"] == "d-1"
        assert row["destination"] == "queue:billing"
        assert (row["attempts"], row["last_error"]) == (1, "SendError: refused")


class TestRequeue:
    """outbox requeue makes a dead row pending again."""

    def test_requeue(self, cli: Cli, store_url: str) -> None:
        """The row leaves the dead list and counts as pending."""
        status, out, _ = cli("outbox", "requeue", "d-1", "--store", store_url)
        assert (status, out.strip()) == (0, "requeued d-1")
        _, out, _ = cli("outbox", "list", "--store", store_url)
        assert out == ""
        _, out, _ = cli("outbox", "status", "--store", store_url, "--json")
        assert (json.loads(out)["pending"], json.loads(out)["dead"]) == (3, 0)

    @pytest.mark.parametrize("id_", ["nope", "p-1", "s-1"])
    def test_not_dead(self, cli: Cli, store_url: str, id_: str) -> None:
        """An unknown id, or a row that is not dead, is one line and exit 1."""
        status, _, err = cli("outbox", "requeue", id_, "--store", store_url)
        assert (status, err.strip()) == (1, f"Error: no dead outbox message has id {id_!r}")


class TestFlush:
    """outbox flush runs the app bus's relay once."""

    def test_flush(self, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Committed rows are delivered through the app's bus; nothing is left."""
        path = tmp_path / "app.sqlite3"
        monkeypatch.setenv("OUTBOX_APP_DB", str(path))
        outbox_app.indexed.clear()
        writer = outbox_app.make_bus()

        async def write() -> None:
            assert isinstance(writer.outbox, SQLiteOutbox)
            async with writer.outbox, writer.unit_of_work() as uow:
                uow.publish(PostPublished(1, "one"))
                uow.publish(PostPublished(2, "two"))

        anyio.run(write)
        status, out, _ = cli("outbox", "flush", "--app", "tests.outbox_app:make_bus")
        assert status == 0
        assert out.strip() == "delivered 2 message(s); left: 0 pending, 0 in flight, 0 dead"
        assert outbox_app.indexed == [1, 2]
        status, out, _ = cli("outbox", "flush", "--app", "tests.outbox_app:make_bus")
        assert out.strip().startswith("delivered 0 message(s)")
        assert outbox_app.indexed == [1, 2]

    def test_no_outbox(self, cli: Cli) -> None:
        """An app bus without an outbox is a usage error."""
        status, _, err = cli("outbox", "flush", "--app", "tests.cli_app:bus")
        assert status == 2
        assert "tests.cli_app:bus has no outbox" in err


class TestMistakes:
    """Bad stores are one line, never a traceback."""

    @pytest.mark.parametrize("command", ["status", "list"])
    @pytest.mark.parametrize(
        ("store", "message"),
        [
            ("/no/such/outbox.sqlite3", "no SQLite database at /no/such/outbox.sqlite3"),
            ("mysql://db/x", "unknown database 'mysql'"),
        ],
    )
    def test_bad_store(self, cli: Cli, command: str, store: str, message: str) -> None:
        """A store that is not there is a usage error naming --store."""
        status, _, err = cli("outbox", command, "--store", store)
        assert status == 2
        assert message in err
        assert "--store" in err

    def test_missing_store(self, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without --store or MESSAGEBUS_OUTBOX the command says what is missing."""
        monkeypatch.delenv("MESSAGEBUS_OUTBOX", raising=False)
        status, _, err = cli("outbox", "requeue", "x")
        assert status == 2
        assert "--store" in err

    def test_store_from_the_environment(
        self, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """MESSAGEBUS_OUTBOX stands in for --store."""
        monkeypatch.setenv("MESSAGEBUS_OUTBOX", str(tmp_path / "missing.sqlite3"))
        status, _, err = cli("outbox", "status")
        assert status == 2
        assert "no SQLite database at" in err

    def test_not_a_database(self, cli: Cli, tmp_path: Path) -> None:
        """A file that is not SQLite gives the driver's reason in one line."""
        text = tmp_path / "notes.txt"
        text.write_text("not a database, just words " * 100)
        status, _, err = cli("outbox", "status", "--store", str(text))
        assert status == 1
        assert err.startswith("error: DatabaseError: file is not a database")
        assert len(err.splitlines()) == 1
