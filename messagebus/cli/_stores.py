"""Store URLs for the command line: which database a subcommand works on, and how.

Store URLs are the library's database URLs (:mod:`messagebus.config`, SQLAlchemy's
meaning): ``postgresql://...`` (or ``postgres://``) is a PostgreSQL DSN;
``sqlite:///relative/path`` (from the current directory), ``sqlite:////absolute/path``
or a plain file path (no ``scheme://``) is an SQLite file, which must exist (the
command line inspects stores; it does not create them). An in-memory SQLite URL is
refused: there would be nothing to inspect.

Contract:

- No command creates tables, whether it reads rows (list, show, status) or changes them
  (requeue, purge, replay): the store's table set-up is replaced by a check that the
  table is there (and not of a newer layout than this messagebus knows); a missing
  table is a one-line error. A command pointed at the wrong database changes nothing
  there, and with no table there is nothing to read or change anyway.
- A PostgreSQL DSN is tried once, with a 5 s connection timeout, before anything
  else: an unreachable server, a misspelt host or database, a refused login is one
  line (psycopg's reason) within seconds, not the pool's retries until its 30 s
  timeout.
- Without the ``postgres`` extra, a PostgreSQL DSN is a
  :class:`~messagebus.ConfigurationError` with the install command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from messagebus._errors import ConfigurationError, InvalidURLError
from messagebus._sql._postgres import connection_failure
from messagebus._sql._schema import VERSION_TABLE, SetUps, check_version
from messagebus._urls import parse_database_url
from messagebus.dead_letters import PostgresDeadLetterStore, SQLiteDeadLetterStore
from messagebus.dead_letters._sql import SCHEMA_VERSION as DEAD_LETTERS_VERSION
from messagebus.outbox import PostgresOutbox, SQLiteOutbox
from messagebus.outbox._sql import SCHEMA_VERSION as OUTBOX_VERSION

__all__ = ["open_dead_letter_store", "open_outbox_store"]

_INSTALL = "pip install 'anyio-messagebus[postgres]'"


def _location(url: str) -> str | Path:
    """Return the DSN (a str, reachable) or the SQLite file (a Path) that ``url`` names.

    Raises:
        click.BadParameter: the URL names neither, or the SQLite file is missing.
        ConfigurationError: a DSN, without the ``postgres`` extra installed.
        click.ClickException: the DSN's server cannot be reached or refuses it.
    """
    if "://" in url or url.startswith("sqlite:"):
        try:
            parsed = parse_database_url(url)
        except InvalidURLError as error:
            raise click.BadParameter(str(error), param_hint="--store") from None
        if parsed.dsn is not None:
            _reach(parsed.dsn)
            return parsed.dsn
        if parsed.path is None:
            raise click.BadParameter(
                f"{url!r} is an in-memory database: nothing to inspect", param_hint="--store"
            )
        url = parsed.path
    path = Path(url)
    if not path.is_file():
        raise click.BadParameter(f"no SQLite database at {path}", param_hint="--store")
    return path


def _reach(dsn: str) -> None:
    """Connect to ``dsn`` once, briefly; turn failure into one line."""
    try:
        import psycopg  # noqa: F401, PLC0415  # the optional extra
        import psycopg_pool  # noqa: F401, PLC0415  # the stores need it too
    except ImportError as exc:
        raise ConfigurationError(
            f"a postgresql:// store needs the postgres extra: {_INSTALL} ({exc})"
        ) from None
    reason = connection_failure(dsn)
    if reason is not None:
        raise click.ClickException(f"cannot use PostgreSQL: {reason}")


def open_dead_letter_store(url: str) -> SQLiteDeadLetterStore | PostgresDeadLetterStore:
    """Return the dead letter store ``url`` names (not yet opened); see the module."""
    location = _location(url)
    store: SQLiteDeadLetterStore | PostgresDeadLetterStore = (
        SQLiteDeadLetterStore(location)
        if isinstance(location, Path)
        else PostgresDeadLetterStore(location)
    )
    _only_check(store, "messagebus_dead_letters", DEAD_LETTERS_VERSION, "dead letter")
    return store


def open_outbox_store(url: str) -> SQLiteOutbox | PostgresOutbox:
    """Return the outbox ``url`` names (not yet opened); see the module."""
    location = _location(url)
    store: SQLiteOutbox | PostgresOutbox = (
        SQLiteOutbox(location) if isinstance(location, Path) else PostgresOutbox(location)
    )
    _only_check(store, "messagebus_outbox", OUTBOX_VERSION, "outbox")
    return store


def _only_check(store: Any, table: str, version: int, what: str) -> None:
    """Replace ``store``'s pending table set-up by a check that the table is there."""
    database = store.database
    sqlite = isinstance(store, SQLiteDeadLetterStore | SQLiteOutbox)
    # The store was made alone, so its set-up is the only one pending on its database.
    database.set_ups = SetUps()
    database.add_set_up(_checker(table, version, what, sqlite=sqlite))


def _checker(table: str, version: int, what: str, *, sqlite: bool) -> Callable[[Any], None]:
    def check(connection: Any) -> None:
        if sqlite:
            found = connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                [table, VERSION_TABLE],
            ).fetchone()[0]
            exists = found == 2  # the table and the version table
            marker = "?"
        else:
            exists = connection.execute(
                "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                [table, VERSION_TABLE],
            ).fetchone()[0]
            marker = "%s"
        if not exists:
            raise click.ClickException(
                f"no {what} table ({table}) in this database: nothing to read or change (the "
                "application creates it when it first runs; is this the right database?)"
            )
        row = connection.execute(
            f"SELECT version FROM {VERSION_TABLE} WHERE table_name = {marker}",
            [table],
        ).fetchone()
        check_version(table, None if row is None else row[0], version)

    return check
