from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import anyio
import click
import pytest
import structlog
from structlog.testing import capture_logs

import tests.cli_app as app
from messagebus.cli._stores import open_dead_letter_store
from messagebus.dead_letters import PostgresDeadLetterStore, SQLiteDeadLetterStore
from tests.conftest import Cli
from tests.messages import PostPublished


@pytest.fixture
def store_path(tmp_path: Path) -> Iterator[Path]:
    """An SQLite store holding two dead letters of the app's `index` subscriber."""
    path = tmp_path / "dead.sqlite3"
    app.search_is_up = False
    app.indexed.clear()

    async def fail_twice() -> None:
        async with SQLiteDeadLetterStore(path) as store:
            app.bus.dead_letters = store
            with capture_logs():
                await app.bus.publish(PostPublished(1, "one"))
                await app.bus.publish(PostPublished(2, "two"))

    anyio.run(fail_twice)
    yield path
    app.search_is_up = False


def ids(cli: Cli, store: Path) -> list[str]:
    status, out, _ = cli("dead-letters", "list", "--store", str(store), "--json")
    assert status == 0
    return [json.loads(line)["id"] for line in out.splitlines()]


class TestHelp:
    """Every command explains itself."""

    @pytest.mark.parametrize(
        "argv",
        [
            [],
            ["demo"],
            ["dead-letters"],
            ["dead-letters", "list"],
            ["dead-letters", "show"],
            ["dead-letters", "replay"],
            ["dead-letters", "purge"],
            ["worker"],
            ["outbox"],
            ["outbox", "status"],
            ["outbox", "list"],
            ["outbox", "requeue"],
            ["outbox", "flush"],
            ["bench"],
        ],
    )
    def test_help(self, cli: Cli, argv: list[str]) -> None:
        """--help prints usage and exits 0."""
        status, out, _ = cli(*argv, "--help")
        assert status == 0
        assert out.startswith("Usage: messagebus")


class TestDeadLetters:
    """list, show, replay and purge against an SQLite store."""

    def test_list(self, cli: Cli, store_path: Path) -> None:
        """A header, then one line per letter, oldest first; filters narrow it."""
        status, out, err = cli("dead-letters", "list", "--store", str(store_path))
        assert status == 0
        header, *rows = out.splitlines()
        assert header.split() == ["id", "last", "failure", "handler", "type", "attempts", "error"]
        assert [row.split()[0] for row in rows] == ids(cli, store_path)
        assert "index    blog.post.published         1  builtins.ConnectionError" in rows[0]
        assert err.strip() == "2 dead letter(s)"
        status, out, _ = cli("dead-letters", "list", "--store", str(store_path), "--limit", "1")
        assert len(out.splitlines()) == 2
        status, out, _ = cli(
            "dead-letters", "list", "--store", f"sqlite:///{store_path}", "--type", "nope"
        )
        assert out == ""

    def test_list_time_filters(self, cli: Cli, store_path: Path) -> None:
        """--since and --until take ISO times with a zone (dates and times ago: test_cli_ops)."""
        store = str(store_path)
        since = ("--since", "2000-01-01T00:00Z")
        status, out, _ = cli("dead-letters", "list", "--store", store, *since)
        assert (status, len(out.splitlines())) == (0, 3)  # the header and two letters
        until = ("--until", "2000-01-01T00:00Z")
        status, out, _ = cli("dead-letters", "list", "--store", store, *until)
        assert (status, out) == (0, "")
        status, _, err = cli("dead-letters", "list", "--store", store, "--until", "soon")
        assert status == 2
        assert "'soon' is not a time" in err
        status, _, err = cli(
            "dead-letters", "list", "--store", store, "--since", "2000-01-01T10:00"
        )
        assert status == 2
        assert "time zone" in err

    def test_show(self, cli: Cli, store_path: Path) -> None:
        """The record as aligned key-value lines, its message as JSON and the traceback."""
        first = ids(cli, store_path)[0]
        status, out, _ = cli("dead-letters", "show", first, "--store", str(store_path))
        assert status == 0
        record = out.split("\n\n")[0].splitlines()
        assert record[0] == f"id               {first}"
        assert record[-1] == "error            builtins.ConnectionError: search cluster timed out"
        assert [line[:17].rstrip() for line in record] == [
            "id",
            "handler",
            "message type",
            "message id",
            "correlation id",
            "attempts",
            "first failed at",
            "last failed at",
            "error",
        ]
        assert "\nmessage\n{\n" in out
        assert '"type": "blog.post.published"' in out
        assert "\n\nTraceback (most recent call last):" in out

    def test_replay(self, cli: Cli, store_path: Path) -> None:
        """Fixed, the letter replays through the app's bus and is gone."""
        first, second = ids(cli, store_path)
        store = str(store_path)
        status, _, err = cli(
            "dead-letters", "replay", first, "--store", store, "--app", "tests.cli_app:bus"
        )
        assert status == 1
        assert err.strip() == "error: ConnectionError: search cluster timed out"
        app.search_is_up = True
        status, out, _ = cli(
            "dead-letters", "replay", first, "--store", store, "--app", "tests.cli_app:bus"
        )
        assert (status, out.strip()) == (0, f"replayed {first}")
        assert app.indexed == [1]
        assert ids(cli, store_path) == [second]

    def test_purge(
        self,
        cli: Cli,
        store_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """--yes deletes; without it the user is asked, and a no keeps everything."""
        store = str(store_path)
        monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
        status, _, err = cli("dead-letters", "purge", "--store", store)
        assert status == 1
        assert "aborted" in err
        assert len(ids(cli, store_path)) == 2
        status, out, _ = cli("dead-letters", "purge", "--store", store, "--yes")
        assert (status, out.strip()) == (0, "purged 2 dead letter(s)")
        assert ids(cli, store_path) == []


class TestMistakes:
    """User mistakes get one line and a non-zero exit, never a traceback."""

    def test_unknown_id(self, cli: Cli, store_path: Path) -> None:
        """show and replay of an unknown id."""
        status, _, err = cli("dead-letters", "show", "nope", "--store", str(store_path))
        assert (status, err.strip()) == (1, "Error: no dead letter has id 'nope'")
        status, _, err = cli(
            "dead-letters",
            "replay",
            "nope",
            "--store",
            str(store_path),
            "--app",
            "tests.cli_app:make_bus",
        )
        assert status == 1
        assert err.strip() == "error: DeadLetterNotFoundError: no dead letter has id 'nope'"

    @pytest.mark.parametrize(
        ("store", "message"),
        [
            ("/no/such/file.sqlite3", "no SQLite database at /no/such/file.sqlite3"),
            ("mysql://db/x", "unknown database 'mysql'"),
        ],
    )
    def test_bad_store(self, cli: Cli, store: str, message: str) -> None:
        """A store that is not there is a usage error naming the option."""
        status, _, err = cli("dead-letters", "list", "--store", store)
        assert status == 2
        assert message in err
        assert "Traceback" not in err

    @pytest.mark.parametrize(
        ("app_spec", "message"),
        [
            ("tests.cli_app", "expected module:attribute"),
            ("no_such_module:bus", "cannot import no_such_module"),
            ("tests.cli_app:missing", "no attribute 'missing'"),
            ("tests.cli_app:not_a_bus", "is not a MessageBus"),
            ("tests.cli_app:make_bus_for", "needs arguments (service)"),
        ],
    )
    def test_bad_app(self, cli: Cli, store_path: Path, app_spec: str, message: str) -> None:
        """--app must name an importable MessageBus (or a function making one)."""
        status, _, err = cli(
            "dead-letters", "replay", "x", "--store", str(store_path), "--app", app_spec
        )
        assert status == 2
        assert message in err
        assert "Traceback" not in err

    def test_missing_store_option(self, cli: Cli) -> None:
        """Without --store (or its variable) the command says what is missing."""
        status, _, err = cli("dead-letters", "list")
        assert status == 2
        assert "--store" in err

    def test_not_a_database(self, cli: Cli, tmp_path: Path) -> None:
        """A file that is not SQLite gives the driver's reason in one line."""
        text = tmp_path / "notes.txt"
        text.write_text("not a database, just words " * 100)
        status, _, err = cli("dead-letters", "list", "--store", str(text))
        assert status == 1
        assert err.startswith("error: DatabaseError: file is not a database")
        assert len(err.splitlines()) == 1


class TestDemo:
    """`messagebus demo` runs the story to its end."""

    def test_demo(self, cli: Cli, tmp_path: Path) -> None:
        """It ends with 'done' and leaves its dead letters in the given SQLite file."""
        try:
            status, out, _ = cli("demo", "--database", str(tmp_path / "demo.sqlite3"))
        finally:
            structlog.reset_defaults()  # the demo configures logging for a terminal
        assert status == 0
        assert out.rstrip().endswith("done")
        assert "welcome, grace <grace@example.org>" in out
        # The file it names is kept, with the story's posts in it.
        path = tmp_path / "demo.sqlite3"
        assert f"path={path}" in out
        with closing(sqlite3.connect(path)) as connection:
            assert connection.execute("SELECT count(*) FROM posts").fetchone() == (2,)
            # and the billing step's two subscription processes, completed.
            processes = "SELECT count(*) FROM messagebus_processes WHERE state IS NULL"
            assert connection.execute(processes).fetchone() == (2,)
        # A story, not a dump: short ids, failures on one line, the hops visible.
        assert "Traceback" not in out
        # structlog quotes values with spaces from 25.x on; the floor (24.4) does not.
        assert re.search(r"error='?SearchUnavailableError: search cluster timed out", out)
        assert re.search(r"message_id=\.\.\.[0-9a-f]{8} ", out)
        assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", out)  # no whole UUID
        assert "relay -> transport: published after the commit" in out
        assert "worker <- queue: received" in out

    def test_without_a_database_it_says_the_scratch_file_is_gone(self, cli: Cli) -> None:
        try:
            status, out, _ = cli("demo")
        finally:
            structlog.reset_defaults()
        assert status == 0
        assert "removed now: keep them with --database PATH" in out
        assert "path=" not in out


class TestStoreUrls:
    """Which store a --store value names."""

    @pytest.mark.parametrize("scheme", ["postgresql://", "postgres://"])
    def test_postgresql(self, postgres_dsn: str, scheme: str) -> None:
        """PostgreSQL DSNs make a PostgreSQL store (once the server answered)."""
        url = scheme + postgres_dsn.partition("://")[2]
        assert isinstance(open_dead_letter_store(url), PostgresDeadLetterStore)

    def test_sqlite_forms(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A path, sqlite:///relative and sqlite:////absolute name the SQLite file."""
        path = tmp_path / "x.sqlite3"
        path.touch()
        monkeypatch.chdir(tmp_path)
        for url in (str(path), "x.sqlite3", "sqlite:///x.sqlite3", f"sqlite:///{path}"):
            store = open_dead_letter_store(url)
            assert isinstance(store, SQLiteDeadLetterStore)
            assert Path(store.database._path).resolve() == path  # the file it will open

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("sqlite:x.sqlite3", "scheme: not a URL; use sqlite:///relative.db"),
            ("sqlite://", "in-memory database: nothing to inspect"),
            ("sqlite://host/x.sqlite3", "host: an SQLite URL has no host"),
            ("mysql://h/db", "scheme: unknown database 'mysql'"),
            ("postgresql://h:port/db", "port: 'port' is not a port number"),
        ],
    )
    def test_bad_store_urls(self, url: str, message: str) -> None:
        """Each mistake names the option and the part of the URL that is wrong."""
        with pytest.raises(click.BadParameter, match=message):
            open_dead_letter_store(url)
