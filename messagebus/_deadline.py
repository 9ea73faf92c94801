"""The time left to the work in progress: a seam between an entry point and middleware.

An entry point whose process may stop at a known time (a Lambda invocation) runs its
work inside :func:`deadline`, giving a function that tells the seconds left; middleware
that holds something for a while reads :func:`time_left`. The idempotency middleware
caps the lease of its claims with it: a claim must not outlive the process that holds
it, or a retry of the message waits for a lease nobody is using.

It is a context variable, so it holds for the tasks started inside the block and for
nothing else; outside any :func:`deadline`, :func:`time_left` is None (no limit).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

__all__ = ["capped_lease", "deadline", "time_left"]

_REMAINING: ContextVar[Callable[[], float] | None] = ContextVar(
    "messagebus_time_left", default=None
)

_SHORTEST_LEASE = 1.0
"""A lease is never capped below this: a claim made with no time left still holds briefly."""


class deadline:  # used as a function: ``with deadline(remaining):``
    """Run the block with ``remaining()`` telling the seconds left to it.

    A class rather than a generator function: the Lambda entry point enters it once per
    invocation, where a generator's context manager costs several times as much.
    """

    __slots__ = ("_remaining", "_token")

    def __init__(self, remaining: Callable[[], float]) -> None:
        self._remaining = remaining

    def __enter__(self) -> None:
        self._token = _REMAINING.set(self._remaining)

    def __exit__(self, *exc_info: object) -> None:
        _REMAINING.reset(self._token)


def time_left() -> float | None:
    """Return the seconds left to the work in progress, or None without a deadline."""
    remaining = _REMAINING.get()
    return None if remaining is None else remaining()


def capped_lease(lease: float) -> float:
    """Return ``lease``, shortened to the time left when that is less (at least 1 s)."""
    remaining = _REMAINING.get()
    if remaining is None:
        return lease
    return max(min(lease, remaining()), _SHORTEST_LEASE)
