"""Database fixtures for the store tests: an SQLite file and a PostgreSQL schema per test.

PostgreSQL comes from ``MESSAGEBUS_TEST_POSTGRES_DSN`` (default: trust auth on the local
server). If it cannot be reached, the tests that need it are skipped on a workstation
and fail when ``CI`` is set: CI must never pass by quietly skipping database tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

POSTGRES_DSN_ENV = "MESSAGEBUS_TEST_POSTGRES_DSN"
DEFAULT_POSTGRES_DSN = "postgresql://root@127.0.0.1:5432/test"


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """A database file path in this test's temporary directory (not created yet)."""
    return tmp_path / "messagebus.sqlite3"


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The test server's DSN, checked reachable once per session."""
    dsn = os.environ.get(POSTGRES_DSN_ENV, DEFAULT_POSTGRES_DSN)
    try:
        import psycopg
    except ImportError as error:
        _unavailable(f"psycopg is not installed: {error}")
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        _unavailable(f"PostgreSQL is unreachable: {error}".strip())
    return dsn


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh schema for this test alone, dropped with everything in it afterwards."""
    import psycopg
    from psycopg import sql

    name = sql.Identifier(schema := f"mb_test_{secrets.token_hex(6)}")
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(name))
    try:
        yield schema
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(name))


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(
            f"{reason}\nCI must run the database tests: start PostgreSQL or point "
            f"{POSTGRES_DSN_ENV} at one.",
            pytrace=False,
        )
    pytest.skip(f"{reason} (set {POSTGRES_DSN_ENV} to run these tests)")  # not in CI: failed above
