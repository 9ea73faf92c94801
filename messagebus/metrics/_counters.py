"""Counters of handler runs that a user can read: the in-process source of truth.

What is counted where (the contract):

- :class:`MetricsMiddleware` counts every handler run its chain passes through, under
  the handler's name: ``processed`` (the run returned), ``rejected`` (it raised
  :class:`~messagebus.CommandRejected`: a business outcome, not a failure), ``failed``
  (it raised any other :class:`Exception`), ``cancelled`` (it was cancelled),
  ``retried`` (runs whose envelope has ``attempt > 1``: an in-process retry or a
  redelivery, whatever their outcome) and ``seconds`` (the total duration of all runs).
  A run is counted where the middleware sits in the chain: place it inside
  :class:`~messagebus.middleware.RetryMiddleware` to count each attempt, outside to count
  each message once (then ``retried`` counts only redeliveries).
- :class:`CountingDeadLetterStore`, given to the bus as ``dead_letters=``, counts
  ``dead_lettered``: records added under a new id, under the record's handler name
  (``"<no handler>"`` and ``"<decode:QUEUE>"`` included). A failed replay replaces its
  record under the same id and is not counted again.

Counters are plain integers and floats, updated without locks: everything runs on one
event loop thread. They are per process and reset when it exits; export them (see
:mod:`messagebus.otel`) for anything longer-lived.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

__all__ = ["Counters", "HandlerCounts"]


@attrs.define
class HandlerCounts:
    """The counts of one handler; see the module for what each one counts."""

    processed: int = 0
    rejected: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0

    @property
    def runs(self) -> int:
        """Runs that ended, whatever the outcome."""
        return self.processed + self.rejected + self.failed + self.cancelled


class Counters(Mapping[str, HandlerCounts]):
    """The counts of every handler seen so far, by handler name (a read-only mapping).

    ``counters["blog.notify"].processed``; a handler not seen yet reads as zeros
    through :meth:`of`. :meth:`snapshot` copies the lot, for a report or a test.
    """

    def __init__(self) -> None:
        self._by_handler: dict[str, HandlerCounts] = {}

    def of(self, handler: str) -> HandlerCounts:
        """Return the live counts of ``handler``, made (all zero) on first use."""
        counts = self._by_handler.get(handler)
        if counts is None:
            counts = self._by_handler[handler] = HandlerCounts()
        return counts

    def snapshot(self) -> dict[str, HandlerCounts]:
        """Return a copy of every handler's counts, which later runs do not change."""
        return {name: attrs.evolve(counts) for name, counts in self._by_handler.items()}

    def total(self) -> HandlerCounts:
        """Return the counts of all handlers added up."""
        total = HandlerCounts()
        for counts in self._by_handler.values():
            for field in attrs.fields(HandlerCounts):
                value: Any = getattr(total, field.name) + getattr(counts, field.name)
                setattr(total, field.name, value)
        return total

    def __getitem__(self, handler: str) -> HandlerCounts:
        return self._by_handler[handler]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_handler)

    def __len__(self) -> int:
        return len(self._by_handler)

    def __repr__(self) -> str:
        return f"Counters({self._by_handler!r})"
