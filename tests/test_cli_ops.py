"""The command line as an operator meets it: --app, --version, read-only commands, clear errors."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import click
import psycopg
import pytest
from psycopg import sql
from structlog.testing import capture_logs

from messagebus import MessageBus
from messagebus.cli._moments import parse_moment
from messagebus.dead_letters import SQLiteDeadLetterStore
from messagebus.outbox import SQLiteOutbox
from tests.conftest import Cli
from tests.messages import PostPublished
from tests.test_cli_outbox import seed

SCRIPT = Path(sys.executable).parent / "messagebus"

MYAPP = textwrap.dedent(
    """
    import os, signal

    import attrs

    from messagebus import Event, MessageBus
    from messagebus.transports.memory import InMemoryTransport


    @attrs.frozen
    class OrderPlaced(Event, name="shop.order.placed"):
        order_id: int


    bus = MessageBus(transport=InMemoryTransport(), service="shop")
    bus.subscriber(OrderPlaced, lambda event: None, name="ship")


    def stop(running):
        os.kill(os.getpid(), signal.SIGTERM)
    """
)


def run_script(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script, as an operator types it, without PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [str(SCRIPT), *argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding ``myapp.py``, as an application's checkout would."""
    (tmp_path / "myapp.py").write_text(MYAPP)
    return tmp_path


class TestApp:
    """--app loads the module from the current directory, on every command."""

    def test_worker_finds_the_module_here(self, app_dir: Path) -> None:
        """`messagebus worker --app myapp:bus` works in myapp.py's directory."""
        done = run_script(
            "worker", "--app", "myapp:bus", "--provision", "--ready-hook", "myapp:stop", cwd=app_dir
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("worker ready: service shop")

    def test_lint_finds_the_module_here(self, app_dir: Path) -> None:
        """The same spelling on another command."""
        done = run_script("lint", "--app", "myapp:bus", cwd=app_dir)
        assert (done.returncode, done.stdout) == (0, "message names read right\n")

    def test_lint_json(self, cli: Cli) -> None:
        """lint --json: one object per finding."""
        status, out, _ = cli("lint", "--app", "tests.test_naming:misnamed", "--json")
        rows = [json.loads(line) for line in out.splitlines()]
        assert status == 1
        assert rows
        assert rows[0].keys() == {"message_type", "class", "which", "name", "problem"}

    @pytest.mark.parametrize("command", ["worker", "lint", "outbox flush", "dead-letters replay"])
    def test_every_command_says_app(self, cli: Cli, command: str) -> None:
        """Every command that loads the application spells it --app."""
        _, out, _ = cli(*command.split(), "--help")
        assert "--app MODULE:ATTRIBUTE" in out


class TestVersion:
    """--version tells the installed version."""

    def test_version(self, cli: Cli) -> None:
        """One line: the name and the version of the installed distribution."""
        status, out, _ = cli("--version")
        assert status == 0
        assert out.startswith("messagebus ")
        assert out.split()[1][0].isdigit()


class TestReadOnly:
    """list, show and status never create tables; they say when there is nothing to read."""

    def test_sqlite_file_without_tables(self, cli: Cli, tmp_path: Path) -> None:
        """An SQLite file without the tables is an error for every command; none made."""
        path = tmp_path / "other.sqlite3"
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE unrelated (x integer)")
        for argv in (
            ("dead-letters", "list", "--store", str(path)),
            ("dead-letters", "show", "x", "--store", str(path)),
            ("outbox", "status", "--store", str(path)),
            ("outbox", "list", "--store", str(path)),
            ("outbox", "requeue", "x", "--store", str(path)),
            ("dead-letters", "purge", "--yes", "--store", str(path)),
            ("dead-letters", "replay", "x", "--app", "tests.cli_app:bus", "--store", str(path)),
        ):
            status, _, err = cli(*argv)
            assert status == 1, argv
            assert "table" in err
            assert "nothing to read or change" in err
            assert len(err.strip().splitlines()) == 1
        with sqlite3.connect(path) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert tables == {"unrelated"}

    def test_postgres_database_without_tables(
        self, cli: Cli, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """Pointed at a PostgreSQL schema without the tables: an error, and no tables made."""
        url = f"{postgres_dsn}{'&' if '?' in postgres_dsn else '?'}"
        url += f"options=-csearch_path%3D{postgres_schema}"
        for argv in (
            ("dead-letters", "list", "--store", url),
            ("outbox", "status", "--store", url),
            ("outbox", "list", "--store", url),
            ("outbox", "requeue", "x", "--store", url),
            ("dead-letters", "purge", "--yes", "--store", url),
        ):
            status, _, err = cli(*argv)
            assert status == 1, argv
            assert "nothing to read or change" in err
        with psycopg.connect(postgres_dsn) as connection:
            count = connection.execute(
                sql.SQL("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s"),
                [postgres_schema],
            ).fetchone()
        assert count == (0,)

    def test_existing_tables_are_read(self, cli: Cli, tmp_path: Path) -> None:
        """With the tables there, the read-only commands read them as before."""
        path = tmp_path / "outbox.sqlite3"

        async def make() -> None:
            async with SQLiteOutbox(path):
                pass

        anyio.run(make)
        status, out, _ = cli("outbox", "status", "--store", str(path), "--json")
        assert status == 0
        assert json.loads(out)["dead"] == 0


class TestPostgresErrors:
    """An unusable PostgreSQL is one line, within seconds."""

    @pytest.mark.parametrize(
        ("dsn", "reason"),
        [
            ("postgresql://root@127.0.0.1:1/test", "Connection refused"),
            ("postgresql://root@127.0.0.1:5432/no_such_database_here", "does not exist"),
        ],
    )
    def test_unreachable(self, cli: Cli, postgres_dsn: str, dsn: str, reason: str) -> None:
        """A refused connection or a misspelt database: one line naming the reason."""
        started = time.monotonic()
        status, _, err = cli("outbox", "status", "--store", dsn)
        assert time.monotonic() - started < 10
        assert status == 1
        assert err.startswith("Error: cannot use PostgreSQL: ")
        assert reason in err
        assert len(err.strip().splitlines()) == 1

    @pytest.mark.parametrize(
        ("dsn", "reason"),
        [
            ("postgresql://root@127.0.0.1:1/test", "Connection refused"),
            ("postgresql://root@127.0.0.1:5432/no_such_database_here", "does not exist"),
        ],
    )
    def test_the_applications_own_database(
        self,
        *,
        cli: Cli,
        postgres_dsn: str,
        dsn: str,
        reason: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An app whose outbox is on an unusable PostgreSQL: one line, no pool retries."""
        module = f"pg_app_{abs(hash(dsn))}"
        (tmp_path / f"{module}.py").write_text(
            "from messagebus import MessageBus\n"
            "from messagebus.config import database_from_env\n"
            "bus = MessageBus(outbox=database_from_env().outbox())\n"
        )
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MESSAGEBUS_DATABASE", dsn)
        started = time.monotonic()
        status, _, err = cli("outbox", "flush", "--app", f"{module}:bus")
        assert time.monotonic() - started < 10
        assert status == 1
        assert err.startswith("error: StoreUnavailableError: cannot reach PostgreSQL: ")
        assert reason in err
        assert len(err.strip().splitlines()) == 1
        assert [r for r in caplog.records if r.name.startswith("psycopg")] == []

    def test_missing_extra(self, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without psycopg: a ConfigurationError with the install command, no traceback."""
        monkeypatch.setitem(sys.modules, "psycopg", None)
        status, _, err = cli("dead-letters", "list", "--store", "postgresql://h/db")
        assert status == 1
        assert err.startswith("error: ConfigurationError: a postgresql:// store needs the")
        assert "pip install 'anyio-messagebus[postgres]'" in err
        assert len(err.strip().splitlines()) == 1


class TestMoments:
    """--since and --until take ISO times, dates and times ago; errors name the option."""

    NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
            ("2026-12-01T09:30:00Z", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
            ("2026-12-01T09:30+01:00", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
            ("90s", NOW - timedelta(seconds=90)),
            ("15m", NOW - timedelta(minutes=15)),
            ("1h", NOW - timedelta(hours=1)),
            ("2d", NOW - timedelta(days=2)),
            ("1w", NOW - timedelta(weeks=1)),
            ("1.5h", NOW - timedelta(minutes=90)),
        ],
    )
    def test_forms(self, text: str, expected: datetime) -> None:
        """Each form names one aware time."""
        assert parse_moment(text, now=lambda: self.NOW) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("yesterday", "is not a time"),
            ("2026-12-01T09:30", "needs a time zone"),
            ("3y", "is not a time"),
        ],
    )
    def test_mistakes(self, text: str, message: str) -> None:
        """Anything else is refused, saying what would do."""
        with pytest.raises(click.BadParameter, match=message):
            parse_moment(text)

    @pytest.mark.parametrize("option", ["--since", "--until"])
    def test_errors_name_the_option(self, cli: Cli, tmp_path: Path, option: str) -> None:
        """The usage error names the option it is about."""
        path = tmp_path / "dead.sqlite3"
        path.touch()
        status, _, err = cli("dead-letters", "list", "--store", str(path), option, "soon")
        assert status == 2
        assert f"Invalid value for '{option}'" in err
        assert "'soon' is not a time" in err

    def test_relative_filter(self, cli: Cli, tmp_path: Path) -> None:
        """--since 1h keeps the letters that failed within the hour."""
        path = tmp_path / "dead.sqlite3"
        bus = MessageBus()

        @bus.subscriber(PostPublished, name="index")
        async def index(event: PostPublished) -> None:
            raise ConnectionError("down")

        async def fail() -> None:
            async with SQLiteDeadLetterStore(path) as store:
                bus.dead_letters = store
                with capture_logs():
                    await bus.publish(PostPublished(1, "t"))

        anyio.run(fail)
        status, out, _ = cli(
            "dead-letters", "list", "--store", str(path), "--since", "1h", "--json"
        )
        assert (status, len(out.splitlines())) == (0, 1)
        status, out, _ = cli(
            "dead-letters", "list", "--store", str(path), "--until", "1h", "--json"
        )
        assert (status, out) == (0, "")


class TestJsonAndCheck:
    """--json on every command that reads; status --check for alerting."""

    def test_show_json(self, cli: Cli, tmp_path: Path) -> None:
        """dead-letters show --json: one object with the message and the traceback."""
        path = tmp_path / "dead.sqlite3"
        bus = MessageBus()

        @bus.subscriber(PostPublished, name="index")
        async def index(event: PostPublished) -> None:
            raise ConnectionError("down")

        async def fail() -> str:
            async with SQLiteDeadLetterStore(path) as store:
                bus.dead_letters = store
                with capture_logs():
                    await bus.publish(PostPublished(1, "t"))
                (letter,) = await store.list()
                return letter.id

        letter_id = anyio.run(fail)
        status, out, _ = cli("dead-letters", "show", letter_id, "--store", str(path), "--json")
        shown = json.loads(out)
        assert status == 0
        assert shown["id"] == letter_id
        assert shown["message"]["data"] == {"post_id": 1, "title": "t"}
        assert "ConnectionError: down" in shown["traceback"]

    def test_check(self, cli: Cli, tmp_path: Path) -> None:
        """--check exits 3 when dead rows exist, 0 when none do; the counts print either way."""
        path = tmp_path / "outbox.sqlite3"

        async def make(dead: bool) -> None:
            async with SQLiteOutbox(path) as store:
                if dead:
                    await seed(store)

        anyio.run(make, False)
        status, out, _ = cli("outbox", "status", "--store", str(path), "--check")
        assert (status, out.splitlines()[2]) == (0, "dead            0")
        anyio.run(make, True)
        status, out, err = cli("outbox", "status", "--store", str(path), "--check", "--json")
        assert (status, json.loads(out)["dead"]) == (3, 1)
        assert err == "Error: check failed: 1 dead row(s)\n"
