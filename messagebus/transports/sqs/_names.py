"""Logical names to AWS names for the SQS transport, and what a resolved name holds.

A logical queue ``orders`` is the SQS queue ``<prefix>orders``, or ``<prefix>orders.fifo``
when it is FIFO; its dead-letter queue is ``<prefix>orders-dlq[.fifo]``. Topics are
named the same way in SNS. The prefix keeps environments (and test runs) apart on one
account; AWS allows 80 characters of letters, digits, ``-`` and ``_`` (plus ``.fifo``)
for a queue name and 256 for a topic name.
"""

from __future__ import annotations

import re

import attrs

from messagebus._errors import InvalidArgumentError

__all__ = ["FIFO_SUFFIX", "Names", "ResolvedQueue", "ResolvedTopic"]

FIFO_SUFFIX = ".fifo"
_NAME = re.compile(r"[A-Za-z0-9_-]*")
MAX_QUEUE_NAME = 80


@attrs.frozen
class Names:
    """Maps logical queue and topic names to AWS names under ``prefix``."""

    prefix: str = attrs.field(default="")

    @prefix.validator
    def _check_prefix(self, _attribute: object, value: str) -> None:
        if not _NAME.fullmatch(value):
            raise InvalidArgumentError(f"prefix {value!r}: use letters, digits, '-' and '_' only")

    def physical(self, logical: str, *, fifo: bool) -> str:
        """Return the AWS name of queue or topic ``logical``."""
        if not logical or not _NAME.fullmatch(logical):
            raise InvalidArgumentError(f"name {logical!r}: use letters, digits, '-' and '_' only")
        name = self.prefix + logical
        if len(name) > MAX_QUEUE_NAME:
            raise InvalidArgumentError(f"{name!r} is longer than SQS's {MAX_QUEUE_NAME} characters")
        return name + FIFO_SUFFIX if fifo else name


@attrs.frozen
class ResolvedQueue:
    """A queue found on the account: its logical name, URL and kind."""

    logical: str
    url: str
    fifo: bool


@attrs.frozen
class ResolvedTopic:
    """A topic found on the account: its logical name, ARN and kind."""

    logical: str
    arn: str
    fifo: bool
