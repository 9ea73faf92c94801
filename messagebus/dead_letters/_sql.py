"""What the SQL dead letter stores share: the schema version and the row mapping.

The table-independent plumbing (names, connections, version rows) is in :mod:`messagebus._sql`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from messagebus.dead_letters._record import DeadLetter

__all__ = ["SCHEMA_VERSION", "record"]

SCHEMA_VERSION = 1
"""The layout this code writes; recorded in ``messagebus_schema``."""


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
