"""Names and schema versions of the tables messagebus manages, for every SQL backend.

Contract: a store's table name is a plain identifier (:func:`check_table_name`), so it
can be quoted into SQL safely. Every managed table has one row in :data:`VERSION_TABLE`
(``table_name``, ``version``) holding the layout version that created it; code that
finds a version newer than the one it knows refuses the table
(:func:`check_version`), so an old messagebus never writes a migrated layout.
"""

from __future__ import annotations

import re

from messagebus._errors import InvalidArgumentError, SchemaVersionError

__all__ = ["VERSION_TABLE", "check_table_name", "check_version"]

VERSION_TABLE = "messagebus_schema"
"""The table of ``(table_name, version)`` rows, next to the tables it describes."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


def check_table_name(table: str) -> str:
    """Return ``table`` if it is a plain identifier, else raise :class:`InvalidArgumentError`.

    At most 48 characters, so the derived index names stay under PostgreSQL's 63.
    """
    if not _IDENTIFIER.fullmatch(table) or table == VERSION_TABLE:
        raise InvalidArgumentError(
            f"table name must be letters, digits and underscores (at most 48, not "
            f"starting with a digit, not {VERSION_TABLE!r}): {table!r}"
        )
    return table


def check_version(table: str, found: int | None, known: int) -> None:
    """Raise :class:`SchemaVersionError` if ``table``'s recorded version is newer than ``known``.

    ``found`` is None for a table not recorded yet (about to be created).
    """
    if found is not None and found > known:
        raise SchemaVersionError(
            f"table {table!r} has schema version {found}; this messagebus knows up to "
            f"{known}: upgrade messagebus"
        )
