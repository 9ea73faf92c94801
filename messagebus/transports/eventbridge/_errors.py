"""EventBridge's faults as the library's transport errors, without importing botocore.

The transport works with aiobotocore's ``events`` client and with the in-memory double,
so it reads a fault by its shape (``response["Error"]["Code"]``, as botocore's
``ClientError`` and :class:`EventBridgeClientError` both have it) and by where its class
comes from (botocore, aiohttp), never by importing those packages. Nothing of theirs
leaves the transport except as the ``__cause__`` of one of the library's errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from messagebus._errors import (
    DestinationNotFoundError,
    MessageBusError,
    TransportError,
    TransportUnavailableError,
)

__all__ = ["RETRYABLE_ENTRY_CODES", "translated"]

RETRYABLE_ENTRY_CODES = frozenset(
    {"InternalFailure", "InternalException", "ThrottlingException", "ServiceUnavailable"}
)
"""PutEvents entry error codes worth sending again (AWS: a fault on its side)."""

_NOT_FOUND = frozenset({"ResourceNotFoundException", "NotFound"})
_VENDORS = ("botocore", "aiobotocore", "aiohttp", "messagebus.transports.eventbridge")


@contextlib.contextmanager
def translated(subject: str) -> Iterator[None]:
    """Re-raise a client's exception inside the block as the library's, ``from`` it."""
    try:
        yield
    except MessageBusError:
        raise
    except Exception as error:
        if not type(error).__module__.startswith(_VENDORS):
            raise
        raise _translate(error, subject) from error


def _translate(error: Exception, subject: str) -> TransportError:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        # Below AWS's answer: no connection, a timeout, no credentials.
        name = type(error).__name__
        if "Connect" in name or "Timeout" in name or "HTTPClient" in name:
            return TransportUnavailableError(
                f"{subject}: the endpoint could not be reached: {error}"
            )
        return TransportError(f"{subject}: {error}")
    details = response.get("Error", {})
    code = str(details.get("Code", ""))
    message = str(details.get("Message", "")) or code
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _NOT_FOUND:
        return DestinationNotFoundError(f"{subject}: not found ({code}): {message}")
    if code in RETRYABLE_ENTRY_CODES or "Throttl" in code or status >= 500:
        return TransportUnavailableError(f"{subject}: AWS answered {code or status}: {message}")
    return TransportError(f"{subject}: AWS refused the request ({code}): {message}")
