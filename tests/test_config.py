"""messagebus.config: database URLs (SQLAlchemy's meaning) and the environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from messagebus import ConfigurationError, InvalidURLError
from messagebus._urls import DatabaseURL, parse_database_url
from messagebus.config import (
    DATABASE_VARIABLE,
    SERVICE_VARIABLE,
    database_from_env,
    database_from_url,
    service_from_env,
)
from messagebus.postgres import PostgresDatabase
from messagebus.sqlite import SQLiteDatabase


class TestDatabaseURLs:
    """parse_database_url: the grammar, SQLAlchemy's meaning of the slashes."""

    @pytest.mark.parametrize(
        ("url", "parsed"),
        [
            ("sqlite:///app.db", DatabaseURL("sqlite", path="app.db")),
            ("sqlite:///data/app.db", DatabaseURL("sqlite", path="data/app.db")),
            ("sqlite:////var/lib/app.db", DatabaseURL("sqlite", path="/var/lib/app.db")),
            ("SQLITE:///app.db", DatabaseURL("sqlite", path="app.db")),
            ("sqlite://", DatabaseURL("sqlite")),
            ("sqlite:///", DatabaseURL("sqlite")),
            ("sqlite:///:memory:", DatabaseURL("sqlite")),
            (
                "postgresql://u:p@db.internal:5432/app?sslmode=require",
                DatabaseURL(
                    "postgresql", dsn="postgresql://u:p@db.internal:5432/app?sslmode=require"
                ),
            ),
            ("postgres://db/app", DatabaseURL("postgresql", dsn="postgres://db/app")),
            ("postgresql://", DatabaseURL("postgresql", dsn="postgresql://")),
        ],
    )
    def test_good(self, url: str, parsed: DatabaseURL) -> None:
        """Three slashes: relative to the current directory; four: absolute; none: memory."""
        assert parse_database_url(url) == parsed

    def test_in_memory(self) -> None:
        """Only SQLite without a path is in memory."""
        assert parse_database_url("sqlite://").in_memory
        assert not parse_database_url("sqlite:///a.db").in_memory
        assert not parse_database_url("postgresql://h/db").in_memory

    @pytest.mark.parametrize(
        ("url", "part", "reason"),
        [
            ("app.db", "scheme", "not a URL; use sqlite:///relative.db"),
            ("sqlite:app.db", "scheme", "not a URL"),
            ("mysql://h/db", "scheme", "unknown database 'mysql'"),
            ("sqlite://app.db", "host", "sqlite:///app.db, an absolute one sqlite:////path"),
            ("sqlite:///app.db?mode=ro", "query", "no ?query"),
            ("sqlite:///data/", "path", "'data/' is a directory"),
            ("postgresql://h:54x/db", "port", "'54x' is not a port number"),
            ("postgresql://h/db/extra", "path", "one database name"),
            ("postgresql://h/db#x", "path", "no #fragment"),
            ("postgresql://h/db?sslmode", "query", "not name=value"),
            ("postgresql://h/db?a=1&a=2", "parameter a", "given twice"),
            ("postgresql://[::1/db", "host", "Invalid IPv6 URL"),
        ],
    )
    def test_bad(self, url: str, part: str, reason: str) -> None:
        """Each mistake is an InvalidURLError naming the part that is wrong."""
        with pytest.raises(InvalidURLError) as raised:
            parse_database_url(url)
        assert raised.value.part == part
        assert reason in raised.value.reason
        assert str(raised.value).startswith(f"{url!r}: {part}: ")

    def test_a_password_is_not_repeated(self) -> None:
        """The message shows the URL without its credentials."""
        with pytest.raises(InvalidURLError) as raised:
            parse_database_url("postgresql://admin:s3cr3t@db:xx/app")
        assert "s3cr3t" not in str(raised.value)
        assert "admin" not in str(raised.value)
        assert raised.value.url == "'postgresql://***@db:xx/app'"


class TestDatabaseFromURL:
    """database_from_url: the database object the URL names, not yet opened."""

    def test_sqlite_relative_to_the_current_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """sqlite:///app.db is ./app.db, as SQLAlchemy reads it."""
        monkeypatch.chdir(tmp_path)
        database = database_from_url("sqlite:///app.db")
        assert isinstance(database, SQLiteDatabase)
        assert database._path == "app.db"  # opened relative to the current directory

    def test_sqlite_absolute(self, tmp_path: Path) -> None:
        """Four slashes: the absolute path."""
        database = database_from_url(f"sqlite:///{tmp_path}/app.db")
        assert isinstance(database, SQLiteDatabase)
        assert database._path == f"{tmp_path}/app.db"

    @pytest.mark.anyio
    async def test_sqlite_in_memory_works(self) -> None:
        """sqlite:// is a working private database: a dead letter store on it counts."""
        database = database_from_url("sqlite://")
        assert isinstance(database, SQLiteDatabase)
        store = database.dead_letters()
        async with database:
            assert await store.list() == ()

    @pytest.mark.anyio
    async def test_sqlite_file_is_created_where_the_url_says(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The relative file appears under the current directory once the database opens."""
        monkeypatch.chdir(tmp_path)
        database = database_from_url("sqlite:///made.db")
        database.outbox()
        async with database:
            pass
        assert (tmp_path / "made.db").is_file()

    def test_postgres(self) -> None:
        """A PostgreSQL URL makes a PostgresDatabase with the options given."""
        pytest.importorskip("psycopg_pool")
        database = database_from_url("postgresql://127.0.0.1/test", schema="app", max_size=2)
        assert isinstance(database, PostgresDatabase)
        assert database.schema == "app"

    def test_postgres_without_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without psycopg: the install hint, not a traceback from deep inside."""
        monkeypatch.setitem(sys.modules, "psycopg_pool", None)
        monkeypatch.setitem(sys.modules, "psycopg", None)
        with pytest.raises(ConfigurationError, match=r"pip install 'anyio-messagebus\[postgres\]'"):
            database_from_url("postgresql://127.0.0.1/test")

    def test_schema_is_for_postgres(self) -> None:
        """schema= with an SQLite URL is refused rather than ignored."""
        with pytest.raises(ConfigurationError, match="schema='app' is for PostgreSQL"):
            database_from_url("sqlite://", schema="app")


class TestFromTheEnvironment:
    """MESSAGEBUS_DATABASE and MESSAGEBUS_SERVICE."""

    def test_database_from_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The variable's URL wins over the default."""
        monkeypatch.setenv(DATABASE_VARIABLE, "sqlite:///from-env.db")
        database = database_from_env("sqlite:///default.db")
        assert isinstance(database, SQLiteDatabase)
        assert database._path == "from-env.db"

    def test_database_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Unset or empty: the default."""
        monkeypatch.setenv(DATABASE_VARIABLE, "")
        database = database_from_env("sqlite:///default.db")
        assert isinstance(database, SQLiteDatabase)
        assert database._path == "default.db"

    def test_database_without_a_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No variable, no default: an error, not a database nobody chose."""
        monkeypatch.delenv(DATABASE_VARIABLE, raising=False)
        with pytest.raises(ConfigurationError, match=r"^MESSAGEBUS_DATABASE is not set"):
            database_from_env()

    def test_bad_url_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The error says where the URL came from, and which part is wrong."""
        monkeypatch.setenv("APP_DB", "sqlite://app.db")
        with pytest.raises(InvalidURLError, match=r"^APP_DB: 'sqlite://app.db': host: ") as raised:
            database_from_env(variable="APP_DB")
        assert (raised.value.variable, raised.value.part) == ("APP_DB", "host")

    def test_other_mistakes_name_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A configuration mistake that is not the URL's still names the variable."""
        monkeypatch.setenv(DATABASE_VARIABLE, "sqlite://")
        with pytest.raises(ConfigurationError, match=r"^MESSAGEBUS_DATABASE: schema="):
            database_from_env(schema="app")

    def test_service(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """MESSAGEBUS_SERVICE, else the default, else an error."""
        monkeypatch.setenv(SERVICE_VARIABLE, "billing")
        assert service_from_env("blog") == "billing"
        monkeypatch.delenv(SERVICE_VARIABLE)
        assert service_from_env("blog") == "blog"
        with pytest.raises(ConfigurationError, match=r"^MESSAGEBUS_SERVICE is not set"):
            service_from_env()
