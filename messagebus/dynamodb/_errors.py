"""Translate botocore's exceptions into the library's store errors, at the boundary.

Every DynamoDB call of the stores runs inside :func:`translated`; nothing from botocore
or aiohttp leaves a store except as the ``__cause__`` of one of these:

- :class:`~messagebus.StoreUnavailableError`: the endpoint could not be reached or timed
  out, DynamoDB throttled the call (after botocore's own bounded retries), or it failed
  on its side (HTTP 5xx): worth trying again later.
- :class:`~messagebus.StoreError`: anything else: the table does not exist, missing
  permissions or credentials, a request DynamoDB refused (an item over 400 KB, a key
  over 2048 bytes).

A failed condition (``ConditionalCheckFailedException``) is not an error: the stores
catch it where a condition is the point (a claim that finds a live record, a complete
with a stale token) before it gets here; see :func:`condition_failed`.
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

from messagebus._errors import StoreError, StoreUnavailableError

__all__ = ["condition_failed", "error_code", "store_error", "translated"]

CONDITION_FAILED = "ConditionalCheckFailedException"
UNAVAILABLE_CODES = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
    }
)


def error_code(error: ClientError) -> str:
    """Return the AWS error code of ``error`` (empty if the answer had none)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def condition_failed(error: ClientError) -> bool:
    """Tell whether ``error`` is DynamoDB's answer to a condition that did not hold."""
    return error_code(error) == CONDITION_FAILED


def store_error(error: ClientError | BotoCoreError, table: str) -> StoreError:
    """Return the library's error for a failed call on ``table``."""
    if isinstance(error, ClientError):
        code = error_code(error)
        message = str(error.response.get("Error", {}).get("Message", "")) or code
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in UNAVAILABLE_CODES or status >= 500:
            return StoreUnavailableError(
                f"DynamoDB table {table!r}: AWS answered {code or status}: {message}"
            )
        if code == "ResourceNotFoundException":
            return StoreError(
                f"DynamoDB table {table!r} does not exist (create it with the store's "
                f"create_table(), or with your infrastructure code): {message}"
            )
        return StoreError(f"DynamoDB table {table!r}: AWS refused the request ({code}): {message}")
    if isinstance(error, ConnectionError | HTTPClientError):
        return StoreUnavailableError(
            f"DynamoDB table {table!r}: the endpoint could not be reached: {error}"
        )
    if isinstance(error, NoCredentialsError):
        return StoreError(
            f"DynamoDB table {table!r}: no AWS credentials found "
            "(pass them, or configure the standard chain)"
        )
    return StoreError(f"DynamoDB table {table!r}: {error}")


@contextlib.contextmanager
def translated(table: str) -> Iterator[None]:
    """Re-raise botocore's exceptions inside the block as the library's, ``from`` them."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise store_error(error, table) from error
