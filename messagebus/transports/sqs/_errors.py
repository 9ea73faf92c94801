"""Translate botocore's exceptions into the library's transport errors, at the boundary.

The SQS transport wraps every AWS call in :func:`translated`; nothing from botocore or
aiohttp leaves it except as the ``__cause__`` of one of these:

- :class:`~messagebus.DestinationNotFoundError`: no such queue or topic.
- :class:`~messagebus.DeliveryExpiredError`: the receipt handle is stale (the message
  is no longer in flight with this receiver).
- :class:`~messagebus.TransportUnavailableError`: the endpoint could not be reached,
  timed out, throttled us, or answered with a server fault (worth trying again later).
- :class:`~messagebus.TransportError`: anything else (credentials, permissions, a
  request AWS refused).

SQS answers in the JSON protocol with query-compatible codes, so one fault can arrive
under either spelling (``QueueDoesNotExist`` or ``AWS.SimpleQueueService.NonExistentQueue``);
both are listed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
)

from messagebus._errors import (
    DeliveryExpiredError,
    DestinationNotFoundError,
    TransportError,
    TransportUnavailableError,
)

__all__ = ["client_error", "error_code", "translated", "vendor_error"]

NOT_FOUND_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NotFound",
        "NotFoundException",
        "ResourceNotFoundException",
    }
)
EXPIRED_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "AWS.SimpleQueueService.MessageNotInflight",
        "MessageNotInflight",
    }
)
UNAVAILABLE_CODES = frozenset(
    {
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "InternalErrorException",
        "RequestThrottled",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "KMSThrottlingException",
    }
)


def error_code(error: ClientError) -> str:
    """Return the AWS error code of ``error`` (empty if the answer had none)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def client_error(error: ClientError, subject: str) -> TransportError:
    """Return the library's error for an AWS fault about ``subject`` (a queue or topic)."""
    code = error_code(error)
    message = str(error.response.get("Error", {}).get("Message", "")) or code
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in NOT_FOUND_CODES:
        return DestinationNotFoundError(f"{subject}: no such queue or topic ({code})")
    # Real SQS reports ChangeMessageVisibility on a message no longer in flight as
    # InvalidParameterValue about the ReceiptHandle, not with a code of its own.
    if code in EXPIRED_CODES or (
        code == "InvalidParameterValue" and "receipthandle" in message.lower().replace(" ", "")
    ):
        return DeliveryExpiredError(f"{subject}: the receipt is no longer valid ({message})")
    if code in UNAVAILABLE_CODES or status >= 500:
        return TransportUnavailableError(f"{subject}: AWS answered {code or status}: {message}")
    return TransportError(f"{subject}: AWS refused the request ({code}): {message}")


def vendor_error(error: BotoCoreError, subject: str) -> TransportError:
    """Return the library's error for a failure below AWS's answer (network, credentials)."""
    if isinstance(error, ConnectionError | HTTPClientError):
        return TransportUnavailableError(f"{subject}: the endpoint could not be reached: {error}")
    if isinstance(error, NoCredentialsError):
        return TransportError(
            f"{subject}: no AWS credentials found (pass them, or configure the standard chain)"
        )
    return TransportError(f"{subject}: {error}")


@contextlib.contextmanager
def translated(subject: str) -> Iterator[None]:
    """Re-raise botocore's exceptions inside the block as the library's, ``from`` them."""
    try:
        yield
    except ClientError as error:
        raise client_error(error, subject) from error
    except BotoCoreError as error:
        raise vendor_error(error, subject) from error
