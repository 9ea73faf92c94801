"""The one URL grammar of messagebus: transports and databases, the library's and the CLI's.

Every URL the library or the ``messagebus`` command reads goes through this module:
:func:`split` checks the scheme and hides credentials from messages, :func:`query`
reads ``?name=value&...``, and :func:`parse_database_url` reads database URLs.
Transport URLs (``memory://``, ``sqs://``, ``eventbridge://``) are read by
:mod:`messagebus.transports._url` with these same pieces; the transports' and the
databases' construction stays with their families.

Database URLs mean what SQLAlchemy's mean:

- ``sqlite:///relative/path.db``: three slashes, then a path relative to the current
  directory (``sqlite:///app.db`` is ``./app.db``);
- ``sqlite:////absolute/path.db``: four slashes, an absolute path;
- ``sqlite://`` or ``sqlite:///:memory:``: a private in-memory database, gone when it
  is closed;
- ``postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]`` (or
  ``postgres://``): a libpq connection URI, handed to psycopg as it is.

Every mistake is an :class:`~messagebus.InvalidURLError` naming the part that is wrong
(scheme, host, port, path, query, or a parameter); a password in a URL is never
repeated in a message.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, urlsplit

import attrs

from messagebus._errors import InvalidURLError

__all__ = ["DatabaseURL", "parse_database_url", "query", "shown", "split"]

_SQLITE_MEMORY = ":memory:"


def split(url: str, expected: str) -> SplitResult:
    """Return ``url``'s parts, checking it has the ``scheme://`` form.

    Args:
        url: the URL.
        expected: what the caller takes, for the message (``"memory://, sqs://..."``).

    Raises:
        InvalidURLError: not ``scheme://...`` (part ``scheme``).
    """
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise InvalidURLError(repr(url), "host", str(error)) from None
    if not parts.scheme or not url.lower().startswith(f"{parts.scheme}://"):
        raise InvalidURLError(shown(url, parts), "scheme", f"not a URL; use {expected}")
    return parts


def shown(url: str, parts: SplitResult) -> str:
    """Return ``url`` quoted for a message, with any credentials (and the query) left out."""
    if "@" not in parts.netloc:
        return repr(url)
    host = parts.netloc.rpartition("@")[2]
    return repr(parts._replace(netloc=f"***@{host}", query="").geturl())


def query(url: str, text: str) -> dict[str, str]:
    """Return the ``name=value&...`` pairs of ``text`` (a URL's query) as a dict.

    Raises:
        InvalidURLError: not ``name=value&...`` (part ``query``), or a name given twice
            (part ``parameter NAME``).
    """
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise InvalidURLError(url, "query", "not name=value&...") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            raise InvalidURLError(url, f"parameter {name}", "given twice")
        found[name] = value
    return found


@attrs.frozen
class DatabaseURL:
    """What a database URL names; see the module for the grammar.

    Attributes:
        scheme: ``"sqlite"`` or ``"postgresql"`` (``postgres://`` reads as the latter).
        path: the SQLite file as the URL gives it (relative to the current directory
            unless absolute); None for an in-memory SQLite database or PostgreSQL.
        dsn: the PostgreSQL connection URI, unchanged; None for SQLite.
    """

    scheme: str
    path: str | None = None
    dsn: str | None = None

    @property
    def in_memory(self) -> bool:
        """Whether this is a private in-memory SQLite database."""
        return self.scheme == "sqlite" and self.path is None


_DATABASES = "sqlite:///relative.db, sqlite:////absolute.db or postgresql://..."


def parse_database_url(url: str) -> DatabaseURL:
    """Return what the database URL ``url`` names; see the module for the grammar.

    Raises:
        InvalidURLError: the URL is malformed or names no database this library has.
    """
    parts = split(url, _DATABASES)
    scheme = parts.scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return _postgres(url, parts)
    if scheme != "sqlite":
        raise InvalidURLError(
            shown(url, parts), "scheme", f"unknown database {parts.scheme!r}; use {_DATABASES}"
        )
    if parts.netloc:
        raise InvalidURLError(
            repr(url),
            "host",
            f"an SQLite URL has no host ({parts.netloc!r}); a relative file is "
            f"sqlite:///{parts.netloc}{parts.path}, an absolute one sqlite:////path",
        )
    if parts.query or parts.fragment:
        raise InvalidURLError(repr(url), "query", "an SQLite URL takes no ?query or #fragment")
    # urlsplit leaves the path with its leading slash: "/app.db" for sqlite:///app.db
    # (relative, as SQLAlchemy reads it), "//abs/app.db" for sqlite:////abs/app.db.
    path = parts.path[1:]
    if path in ("", _SQLITE_MEMORY):
        return DatabaseURL("sqlite")
    if path.endswith("/"):
        raise InvalidURLError(repr(url), "path", f"{path!r} is a directory, not a file")
    return DatabaseURL("sqlite", path=path)


def _postgres(url: str, parts: SplitResult) -> DatabaseURL:
    where = shown(url, parts)
    try:
        parts.port  # noqa: B018  # urlsplit checks the port only when asked
    except ValueError:
        port = parts.netloc.rpartition(":")[2]
        raise InvalidURLError(where, "port", f"{port!r} is not a port number") from None
    if parts.fragment:
        raise InvalidURLError(where, "path", "a PostgreSQL URL has no #fragment")
    if parts.path.count("/") > 1:
        raise InvalidURLError(
            where, "path", f"{parts.path!r}: the path is one database name (/dbname)"
        )
    query(where, parts.query)  # libpq's parameters: their names and values are psycopg's
    return DatabaseURL("postgresql", dsn=url)
