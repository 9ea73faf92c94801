"""What the SQL dead letter stores share: the schema version, names, row mapping."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from messagebus.dead_letters._record import DeadLetter

__all__ = ["SCHEMA_VERSION", "VERSION_TABLE", "check_table_name", "record"]

SCHEMA_VERSION = 1
"""The layout this code writes; recorded in ``messagebus_schema``."""

VERSION_TABLE = "messagebus_schema"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


def check_table_name(table: str) -> str:
    """Return ``table`` if it is a plain identifier, else raise :class:`ValueError`.

    At most 48 characters, so the derived index names stay under PostgreSQL's 63.
    """
    if not _IDENTIFIER.fullmatch(table) or table == VERSION_TABLE:
        raise ValueError(
            f"table name must be letters, digits and underscores (at most 48, not "
            f"starting with a digit, not {VERSION_TABLE!r}): {table!r}"
        )
    return table


def record(row: Sequence[Any], first_failed_at: datetime, last_failed_at: datetime) -> DeadLetter:
    """Build a record from a row in column order and its two converted times."""
    return DeadLetter(
        id=row[0],
        handler=row[1],
        message_type=row[2],
        message_id=row[3],
        correlation_id=row[4],
        body=row[5],
        error_type=row[6],
        error_message=row[7],
        traceback=row[8],
        attempts=row[9],
        first_failed_at=first_failed_at,
        last_failed_at=last_failed_at,
    )
