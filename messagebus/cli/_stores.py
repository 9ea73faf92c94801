"""Store URLs for the command line: which database a subcommand works on.

``postgresql://...`` (or ``postgres://``) is a PostgreSQL DSN; ``sqlite:///abs/path``,
``sqlite:relative/path`` or a plain file path is an SQLite file, which must exist (the
command line inspects stores; it does not create them).
"""

from __future__ import annotations

from pathlib import Path

import click

from messagebus.dead_letters import PostgresDeadLetterStore, SQLiteDeadLetterStore
from messagebus.outbox import PostgresOutbox, SQLiteOutbox

__all__ = ["open_dead_letter_store", "open_outbox_store"]


def _location(url: str) -> str | Path:
    """Return the DSN (a str) or the SQLite file (a Path) that ``url`` names.

    Raises:
        click.BadParameter: the URL names neither, or the SQLite file is missing.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return url
    if url.startswith("sqlite:"):
        url = url.removeprefix("sqlite:").removeprefix("//")
    elif "://" in url:
        raise click.BadParameter(
            f"{url!r}: use postgresql://... or an SQLite path", param_hint="--store"
        )
    path = Path(url)
    if not path.is_file():
        raise click.BadParameter(f"no SQLite database at {path}", param_hint="--store")
    return path


def open_dead_letter_store(url: str) -> SQLiteDeadLetterStore | PostgresDeadLetterStore:
    """Return the dead letter store ``url`` names (not yet opened); see the module."""
    location = _location(url)
    if isinstance(location, Path):
        return SQLiteDeadLetterStore(location)
    return PostgresDeadLetterStore(location)


def open_outbox_store(url: str) -> SQLiteOutbox | PostgresOutbox:
    """Return the outbox ``url`` names (not yet opened); see the module."""
    location = _location(url)
    if isinstance(location, Path):
        return SQLiteOutbox(location)
    return PostgresOutbox(location)
