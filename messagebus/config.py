"""Configuration from URLs and the environment: the database, the service name.

One grammar for every URL (:mod:`messagebus._urls`): the transports' (read by
:func:`messagebus.transports.transport_from_url`) and the databases' (read here),
the same in the library and on the command line. Database URLs mean what SQLAlchemy's
mean:

=================================  ==================================================
``sqlite:///relative/app.db``      the file ``relative/app.db`` under the current directory
``sqlite:////var/lib/app.db``      the file ``/var/lib/app.db`` (four slashes: absolute)
``sqlite://``, ``sqlite:///:memory:``  a private in-memory database (gone when closed)
``postgresql://user@host/db?...``  a PostgreSQL connection URI (``postgres://`` too),
                                   handed to psycopg unchanged (``anyio-messagebus[postgres]``)
=================================  ==================================================

The environment variables (the ``messagebus`` command reads the same ones):

- ``MESSAGEBUS_DATABASE``: :func:`database_from_env`; the CLI's ``--store``.
- ``MESSAGEBUS_SERVICE``: :func:`service_from_env`.
- ``MESSAGEBUS_TRANSPORT``: :func:`messagebus.transports.transport_from_env`.
- ``MESSAGEBUS_APP``, ``MESSAGEBUS_CONCURRENCY``: the CLI's ``--app`` and
  ``messagebus worker --concurrency``.

A bad URL is an :class:`~messagebus.InvalidURLError` naming the part that is wrong
(and the variable it came from); nothing connects until the database is entered.
"""

from messagebus._config import (
    APP_VARIABLE,
    CONCURRENCY_VARIABLE,
    DATABASE_VARIABLE,
    SERVICE_VARIABLE,
    TRANSPORT_VARIABLE,
    database_from_env,
    database_from_url,
    service_from_env,
)

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
