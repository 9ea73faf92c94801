"""Database objects and the service name from URLs and the environment (see messagebus.config)."""

from __future__ import annotations

import os

from messagebus._errors import ConfigurationError, InvalidURLError
from messagebus._urls import parse_database_url
from messagebus.postgres import PostgresDatabase
from messagebus.sqlite import SQLiteDatabase
from messagebus.transports._url import DEFAULT_VARIABLE

__all__ = [
    "APP_VARIABLE",
    "CONCURRENCY_VARIABLE",
    "DATABASE_VARIABLE",
    "SERVICE_VARIABLE",
    "TRANSPORT_VARIABLE",
    "database_from_env",
    "database_from_url",
    "service_from_env",
]

APP_VARIABLE = "MESSAGEBUS_APP"
"""The CLI's ``--app module:attribute`` when the option is not given."""
CONCURRENCY_VARIABLE = "MESSAGEBUS_CONCURRENCY"
"""``messagebus worker --concurrency`` when the option is not given."""
DATABASE_VARIABLE = "MESSAGEBUS_DATABASE"
"""The database URL :func:`database_from_env` and the CLI's ``--store`` read."""
SERVICE_VARIABLE = "MESSAGEBUS_SERVICE"
"""The service name :func:`service_from_env` reads."""
TRANSPORT_VARIABLE = DEFAULT_VARIABLE
"""The transport URL :func:`~messagebus.transports.transport_from_env` reads."""

_MEMORY = ":memory:"
_INSTALL = "pip install 'anyio-messagebus[postgres]'"


def database_from_url(
    url: str, *, schema: str | None = None, max_size: int = 4
) -> SQLiteDatabase | PostgresDatabase:
    """Return the database object ``url`` names (not yet opened); see the module.

    Hand out the stores from it (``database.outbox()``, ``.idempotency()``,
    ``.dead_letters()``, ``.event_log()``), so that they share its transactions.

    Args:
        url: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://`` or
            ``postgresql://...``.
        schema: PostgreSQL only: the schema the stores' tables go in.
        max_size: PostgreSQL only: the pool's size.

    Raises:
        InvalidURLError: the URL is malformed or names no database this library has.
        ConfigurationError: ``postgresql://`` without the ``postgres`` extra, or
            ``schema`` given for SQLite.
    """
    parsed = parse_database_url(url)
    if parsed.dsn is not None:
        try:
            return PostgresDatabase(parsed.dsn, schema=schema, max_size=max_size)
        except ImportError as error:
            raise ConfigurationError(
                f"a postgresql:// database needs the postgres extra: {_INSTALL} ({error})"
            ) from None
    if schema is not None:
        raise ConfigurationError(f"schema={schema!r} is for PostgreSQL; {url!r} is SQLite")
    return SQLiteDatabase(_MEMORY if parsed.path is None else parsed.path)


def database_from_env(
    default: str | None = None,
    variable: str = DATABASE_VARIABLE,
    *,
    schema: str | None = None,
    max_size: int = 4,
) -> SQLiteDatabase | PostgresDatabase:
    """Return the database the environment variable ``variable`` names, else ``default``.

    An unset or empty variable means ``default``; with no default, that is an error
    rather than a database nobody chose. Errors are :func:`database_from_url`'s, their
    message starting with the variable's name.

    Raises:
        ConfigurationError: the variable is unset and there is no default.
        InvalidURLError: as :func:`database_from_url`, naming the variable.
    """
    url = os.environ.get(variable) or default
    if url is None:
        raise ConfigurationError(
            f"{variable} is not set: give it a database URL (sqlite:///app.db, postgresql://...)"
        )
    try:
        return database_from_url(url, schema=schema, max_size=max_size)
    except InvalidURLError as error:
        raise InvalidURLError(error.url, error.part, error.reason, variable=variable) from error
    except ConfigurationError as error:
        raise ConfigurationError(f"{variable}: {error}") from error


def service_from_env(default: str | None = None, variable: str = SERVICE_VARIABLE) -> str:
    """Return the service name in the environment variable ``variable``, else ``default``.

    For ``MessageBus(service=service_from_env("billing"), ...)``: one module deployed
    under several names (per environment, per tenant) without changing it.

    Raises:
        ConfigurationError: the variable is unset (or empty) and there is no default.
    """
    name = os.environ.get(variable) or default
    if name is None:
        raise ConfigurationError(f"{variable} is not set: give it this service's name")
    return name
