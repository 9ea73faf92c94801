"""Names and schema versions of the tables messagebus manages, for every SQL backend.

Contract: a store's table name is a plain identifier (:func:`check_table_name`), so it
can be quoted into SQL safely. Every managed table has one row in :data:`VERSION_TABLE`
(``table_name``, ``version``) holding the layout version that created it; code that
finds a version newer than the one it knows refuses the table
(:func:`check_version`), so an old messagebus never writes a migrated layout.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from messagebus._errors import InvalidArgumentError, SchemaVersionError

__all__ = ["VERSION_TABLE", "SetUps", "check_table_name", "check_version"]

_C = TypeVar("_C")

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


class SetUps(Generic[_C]):
    """The table set-ups of the stores on one database, each run once, lazily.

    Contract: a store adds its set-up when it is made (:meth:`add`); the database runs
    whatever is pending (:meth:`run`) before its next call, in worker threads, one
    runner at a time. A set-up leaves the queue only once it has succeeded: one that
    raises stays, and the next call tries it again (so one store's failing set-up
    fails every call on the database until it passes: the stores share it). Set-ups
    are idempotent (``CREATE ... IF NOT EXISTS``), so running one again on another
    connection (:meth:`pending`, for a store first used inside a caller's transaction)
    is harmless.
    """

    def __init__(self) -> None:
        self._pending: list[Callable[[_C], None]] = []
        # Runners take turns (PostgreSQL runs calls in several threads). add() does not
        # take the lock, which a set-up waiting for a busy database holds for seconds:
        # appending to the end, and deleting the head, are atomic list operations.
        self._lock = threading.Lock()

    def add(self, set_up: Callable[[_C], None]) -> None:
        """Queue ``set_up`` to run before the database's next call."""
        self._pending.append(set_up)

    def pending(self, set_up: Callable[[_C], None]) -> bool:
        """Return whether ``set_up`` has not succeeded yet."""
        return set_up in self._pending

    def __bool__(self) -> bool:
        return bool(self._pending)

    def run(self, apply: Callable[[Callable[[_C], None]], None]) -> None:
        """Blocking: ``apply`` each pending set-up in order; stop at the first that raises."""
        with self._lock:
            while self._pending:
                apply(self._pending[0])
                del self._pending[0]
