"""Transports named by URL: one application module on memory or SQS, by configuration.

:func:`transport_from_url` makes the transport a URL names; :func:`transport_from_env`
reads the URL from an environment variable (``MESSAGEBUS_TRANSPORT``), so a module that
builds its bus with ``MessageBus(transport=transport_from_env(), ...)`` runs in-process
in tests and development and on SQS in production, unchanged.

URLs:

- ``memory://``: a new :class:`~messagebus.transports.memory.InMemoryTransport` on a broker of
  its own.
- ``memory://NAME``: an in-memory transport on this process's broker called ``NAME``
  (letters, digits, ``.``, ``-``, ``_``), made on first use and kept for the life of the
  process: buses given the same URL in one process see the same queues. Nothing crosses
  processes.
- ``sqs://[REGION][?name=value&...]``: an SQS transport (``pip install
  'anyio-messagebus[sqs]'``; asyncio only), its constructor's arguments in the query:

  ``region``            the AWS region, if not the URL's host; else ``AWS_REGION``,
                        ``AWS_DEFAULT_REGION``, or the profile's region.
  ``endpoint_url``      an SQS/SNS-compatible endpoint (LocalStack). ``https://`` goes
                        anywhere; plain ``http://`` only to a loopback host
                        (``localhost``, 127.0.0.0/8, ``::1``), because elsewhere it would
                        carry every message body (and the signed requests) across the
                        network in clear. ``allow_http=true`` permits it deliberately
                        (a LocalStack container reached by its service name).
  ``prefix``            put before every queue and topic name (environments, test runs).
  ``profile``           the AWS profile to take credentials (and the region) from.
  ``max_attempts``, ``connect_timeout``, ``max_pool_connections``, ``ack_window``,
  ``topic_max_bytes``   as :class:`~messagebus.transports.sqs.SQSTransport` documents them.

- ``eventbridge://[REGION][?bus=NAME&name=value&...]``: events through the EventBridge
  bus ``NAME`` (``default`` if not given), commands and receiving through SQS: an
  :class:`~messagebus.transports.eventbridge.EventBridgeTransport` on the SQS transport
  the same URL's other parameters (those of ``sqs://``) make, its ``events`` client
  made with the same region, endpoint and profile.

  Credentials never go in the URL (``sqs://key:secret@...`` is refused, and the secret
  is not echoed): botocore's standard chain (environment, profile, instance role) finds
  them.

A URL that names none of these, or a parameter that is unknown, repeated or malformed,
raises :class:`~messagebus.ConfigurationError` with the reason; nothing connects until
the transport is entered.
"""

from __future__ import annotations

import ipaddress
import os
import re
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

import attrs

from messagebus._errors import ConfigurationError, InvalidArgumentError, InvalidURLError
from messagebus._urls import query as _query
from messagebus._urls import shown as _shown
from messagebus._urls import split
from messagebus.transports._protocol import Transport
from messagebus.transports.memory import InMemoryTransport, MemoryBroker

__all__ = ["SQSSettings", "transport_from_env", "transport_from_url"]

DEFAULT_VARIABLE = "MESSAGEBUS_TRANSPORT"

_BROKER_NAME = re.compile(r"[A-Za-z0-9._-]+")
_BUS_NAME = re.compile(r"[A-Za-z0-9._/-]{1,256}")
_BROKERS: dict[str, MemoryBroker] = {}
# How often each variable was read by transport_from_env: the command line checks that
# an application read the URL it was given (see ``messagebus worker --transport``).
_READS: Counter[str] = Counter()
# Transports transport_from_env made from its default, the variable being unset: the
# worker refuses an in-memory one (see fell_back).
_FALLBACKS: weakref.WeakSet[Transport] = weakref.WeakSet()

_INSTALL = "pip install 'anyio-messagebus[sqs]'"
_TRANSPORTS = "memory://, memory://NAME, sqs://REGION?... or eventbridge://REGION?..."


def _split(url: str) -> SplitResult:
    return split(url, _TRANSPORTS)


def _integer(text: str) -> int:
    return int(text)


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise InvalidArgumentError(text)
    return value


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise InvalidArgumentError(text)


# The SQS transport's tuning arguments, and how a query value becomes one.
_SQS_OPTIONS: dict[str, Callable[[str], object]] = {
    "max_attempts": _integer,
    "connect_timeout": _non_negative,
    "max_pool_connections": _integer,
    "ack_window": _non_negative,
    "topic_max_bytes": _integer,
}
_KINDS: dict[Callable[[str], object], str] = {
    _integer: "an integer",
    _non_negative: "a number >= 0",
    _flag: "true or false",
}
_SQS_PARAMETERS = ("region", "endpoint_url", "prefix", "profile", "allow_http", *_SQS_OPTIONS)


@attrs.frozen
class SQSSettings:
    """What an ``sqs://`` URL says: the SQS transport's constructor arguments.

    Attributes:
        region: the AWS region; None leaves it to the profile (then it must have one).
        endpoint_url: the endpoint instead of AWS's, checked as the module says.
        prefix: put before every queue and topic name.
        profile: the AWS profile to make the session from; None for botocore's default.
        options: the other constructor arguments given (``max_attempts``, ...), typed.
    """

    region: str | None
    endpoint_url: str | None = None
    prefix: str = ""
    profile: str | None = None
    options: Mapping[str, object] = attrs.field(factory=dict)


SQSFactory = Callable[[SQSSettings], Transport]
"""Makes the SQS transport from parsed settings (the default imports it lazily)."""


def transport_from_url(url: str, *, sqs: SQSFactory | None = None) -> Transport:
    """Return a new transport as ``url`` names it (see the module for the URLs).

    Args:
        url: ``memory://``, ``memory://NAME`` or ``sqs://...``.
        sqs: makes the SQS transport from the parsed settings; by default
            :class:`~messagebus.transports.sqs.SQSTransport`, imported only now.

    Raises:
        ConfigurationError: the URL is malformed or names nothing known, or ``sqs://``
            without the SQS extra installed.
    """
    parts = _split(url)
    if parts.scheme == "memory":
        return _memory(url, parts)
    if parts.scheme == "sqs":
        return (_sqs_transport if sqs is None else sqs)(parse_sqs_url(url))
    if parts.scheme == "eventbridge":
        return _eventbridge(url, parts, sqs)
    raise InvalidURLError(
        _shown(url, parts), "scheme", f"unknown transport {parts.scheme!r}; use {_TRANSPORTS}"
    )


def transport_from_env(
    default: str = "memory://", variable: str = DEFAULT_VARIABLE, *, sqs: SQSFactory | None = None
) -> Transport:
    """Return the transport the environment variable ``variable`` names, else ``default``.

    An unset or empty variable means ``default``. Errors are those of
    :func:`transport_from_url`, their message starting with the variable's name.
    """
    _READS[variable] += 1
    url = os.environ.get(variable) or default
    try:
        transport = transport_from_url(url, sqs=sqs)
    except InvalidURLError as error:
        raise InvalidURLError(error.url, error.part, error.reason, variable=variable) from error
    except ConfigurationError as error:
        raise ConfigurationError(f"{variable}: {error}") from error
    if not os.environ.get(variable):
        _FALLBACKS.add(transport)
    return transport


def times_read(variable: str = DEFAULT_VARIABLE) -> int:
    """Return how often :func:`transport_from_env` has read ``variable`` in this process."""
    return _READS[variable]


def fell_back(transport: Transport) -> bool:
    """Return whether :func:`transport_from_env` made ``transport`` from its default.

    True when the variable was unset or empty: nobody chose that transport for this
    deployment (``messagebus worker`` refuses an in-memory one).
    """
    return transport in _FALLBACKS


def parse_sqs_url(url: str) -> SQSSettings:
    """Return the settings an ``sqs://`` URL gives; see the module for its parameters.

    Raises:
        ConfigurationError: not an ``sqs://`` URL, or a parameter is wrong.
    """
    parts = _split(url)
    shown = _shown(url, parts)
    if parts.scheme != "sqs":
        raise InvalidURLError(shown, "scheme", "not an sqs:// URL")
    if "@" in parts.netloc:
        raise InvalidURLError(
            shown,
            "host",
            "credentials do not go in the URL; use the environment, a profile "
            "(?profile=NAME) or an instance role",
        )
    if parts.path not in ("", "/") or parts.fragment:
        raise InvalidURLError(shown, "path", "sqs://[REGION][?name=value&...] has no path")
    query = _query(shown, parts.query)
    unknown = sorted(set(query) - set(_SQS_PARAMETERS))
    if unknown:
        raise InvalidURLError(
            shown,
            f"parameter {', '.join(unknown)}",
            f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(_SQS_PARAMETERS)}",
        )
    region = query.get("region") or None
    if parts.netloc:
        if region is not None and region != parts.netloc:
            raise InvalidURLError(
                shown, "host", f"two regions, {parts.netloc!r} and {region!r}; give one"
            )
        region = parts.netloc
    profile = query.get("profile") or None
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None and profile is None:
        raise InvalidURLError(
            shown, "host", "no region: use sqs://REGION, ?region=, AWS_REGION or a profile"
        )
    allow_http = _converted(shown, "allow_http", query.get("allow_http", "false"), _flag)
    endpoint = query.get("endpoint_url") or None
    if endpoint is not None:
        _check_endpoint(shown, endpoint, allow_http=bool(allow_http))
    options = {
        name: _converted(shown, name, query[name], convert)
        for name, convert in _SQS_OPTIONS.items()
        if name in query
    }
    return SQSSettings(
        region=region,
        endpoint_url=endpoint,
        prefix=query.get("prefix", ""),
        profile=profile,
        options=options,
    )


def _memory(url: str, parts: SplitResult) -> InMemoryTransport:
    if parts.path or parts.query or parts.fragment:
        raise InvalidURLError(repr(url), "path", "memory:// and memory://NAME take nothing else")
    name = parts.netloc
    if not name:
        return InMemoryTransport()
    if _BROKER_NAME.fullmatch(name) is None:
        raise InvalidURLError(
            repr(url), "host", f"a broker name is letters, digits, '.', '-' or '_'; not {name!r}"
        )
    broker = _BROKERS.get(name)
    if broker is None:
        broker = _BROKERS[name] = MemoryBroker()
    return InMemoryTransport(broker)


def _converted(shown: str, name: str, text: str, convert: Callable[[str], object]) -> object:
    try:
        return convert(text)
    except ValueError:
        raise InvalidURLError(
            shown, f"parameter {name}", f"must be {_KINDS[convert]}, not {text!r}"
        ) from None


def _check_endpoint(shown: str, endpoint: str, *, allow_http: bool) -> None:
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
    except ValueError:
        host = None
    if host is None or parts.scheme not in ("http", "https"):
        raise InvalidURLError(shown, "parameter endpoint_url", "must be http(s)://HOST[:PORT]")
    if parts.scheme == "http" and not allow_http and not _is_loopback(host):
        raise InvalidURLError(
            shown,
            "parameter endpoint_url",
            f"{endpoint!r} is plain http to a host that is not this machine: messages "
            "would cross the network in clear; use https, or allow_http=true if that is "
            "intended",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _eventbridge(url: str, parts: SplitResult, sqs: SQSFactory | None) -> Transport:
    """Make the EventBridge transport on the SQS transport the rest of the URL names."""
    shown = _shown(url, parts)
    query = _query(shown, parts.query)
    bus = query.pop("bus", "") or "default"
    if _BUS_NAME.fullmatch(bus) is None:
        raise InvalidURLError(
            shown, "parameter bus", f"must be 1-256 of A-Z a-z 0-9 . - _ /: {bus!r}"
        )
    try:
        settings = parse_sqs_url(parts._replace(scheme="sqs", query=urlencode(query)).geturl())
    except InvalidURLError as error:
        raise InvalidURLError(shown, error.part, error.reason) from error
    queues = (_sqs_transport if sqs is None else sqs)(settings)
    try:
        from aiobotocore.session import AioSession, get_session  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError as error:
        raise ConfigurationError(f"eventbridge:// needs {_INSTALL} ({error})") from error

    from messagebus.transports.eventbridge import EventBridgeTransport  # noqa: PLC0415

    session = AioSession(profile=settings.profile) if settings.profile else get_session()
    region = settings.region or session.get_config_variable("region")

    def open_events() -> Any:
        return session.create_client(
            "events", region_name=region, endpoint_url=settings.endpoint_url
        )

    return EventBridgeTransport(queues, bus=bus, prefix=settings.prefix, open_events=open_events)


def _sqs_transport(settings: SQSSettings) -> Transport:
    """Make the SQS transport, importing it (and aiobotocore) only now."""
    try:
        # The optional extra: neither is importable without ``anyio-messagebus[sqs]``.
        from aiobotocore.session import AioSession  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

        from messagebus.transports.sqs import SQSTransport  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError as error:
        raise ConfigurationError(
            f"sqs:// needs the SQS transport's dependencies: {_INSTALL} ({error})"
        ) from error
    session = None
    region = settings.region
    if settings.profile is not None:
        from botocore.exceptions import ProfileNotFound  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

        session = AioSession(profile=settings.profile)
        try:
            # Asked now even with a region given: a missing profile is found here, not
            # at the first receive.
            configured = session.get_config_variable("region")
            region = region or configured
        except ProfileNotFound as error:
            raise ConfigurationError(f"sqs://: {error}") from error
    if not region:
        raise ConfigurationError(
            f"sqs://: profile {settings.profile!r} has no region; give ?region="
        )
    arguments: dict[str, Any] = dict(settings.options)
    transport: Transport = SQSTransport(
        region=region,
        endpoint_url=settings.endpoint_url,
        prefix=settings.prefix,
        session=session,
        **arguments,
    )
    return transport
