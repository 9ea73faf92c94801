"""Idempotency records in a dictionary, for one process."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from messagebus._clock import TimeSource, wall_time
from messagebus._errors import InvalidArgumentError
from messagebus.idempotency._store import (
    Claimed,
    ClaimOutcome,
    Completed,
    InProgress,
    Mismatch,
    live_outcome,
)

__all__ = ["InMemoryIdempotencyStore", "Record", "ScopeRecords"]


_FINGERPRINT, _TOKEN, _EXPIRES_AT, _RESULT = range(4)
"""A record is a list ``[fingerprint, token, expires_at, result]``: ``expires_at`` is the
lease's end while in progress, the TTL's end once completed; ``result`` is None while in
progress; ``token`` is None for a claim of the fast path (:class:`ScopeRecords`), whose
holder keeps the record itself. A list, not an attrs instance: one is made per claim,
and a list literal is a fraction of an instance's cost. Not a tuple replaced on
completion either: measured 0.4 us slower per dispatch, though the garbage collector
untracks tuples of strings and floats."""

Record = list[Any]
"""A claim of the fast path: the record itself (see :meth:`ScopeRecords.claim`)."""


class InMemoryIdempotencyStore:
    """Keeps idempotency records in a dictionary in this process.

    Limits: it deduplicates only within this process (another process has its own
    dictionary), nothing survives a restart, and records are removed only by
    :meth:`cleanup` (or by being claimed again once expired). Task-safe within one event
    loop: no method awaits while it reads or changes a record, so each is atomic.

    Args:
        clock: seconds since the Unix epoch (``time.time``) or a ``Clock``
            (a fake one in tests).
    """

    def __init__(self, *, clock: TimeSource = time.time) -> None:
        # A dictionary per scope, keyed by the bare key: no (scope, key) tuple to build
        # and hash per look-up, and the middleware holds its scope's dictionary.
        self._scopes: dict[str, dict[str, Record]] = {}
        self._clock = wall_time(clock)
        # A token needs to differ from this store's other tokens only: a counter does,
        # for a twentieth of a UUIDv7's cost.
        self._tokens = itertools.count(1)

    def scope(self, scope: str) -> ScopeRecords:
        """Return the records of ``scope``, with synchronous claims (the fast path).

        For :class:`~messagebus.middleware.IdempotencyMiddleware`, which knows this
        store runs no I/O: the same records and outcomes as :meth:`claim`,
        :meth:`complete` and :meth:`release`, with no coroutine, no token and no
        :class:`Claimed` per dispatch.
        """
        return ScopeRecords(self._scopes.setdefault(scope, {}), self._clock)

    async def claim(self, scope: str, key: str, fingerprint: str, lease: float) -> ClaimOutcome:
        """Claim ``key`` in ``scope`` for ``lease`` seconds, or report who has it."""
        now = self._clock()
        records = self._scopes.setdefault(scope, {})
        record = records.get(key)
        if record is None or record[_EXPIRES_AT] <= now:
            token = str(next(self._tokens))
            records[key] = [fingerprint, token, now + lease, None]
            return Claimed(token)
        return live_outcome(fingerprint, record[_FINGERPRINT], record[_RESULT], record[_EXPIRES_AT])

    async def complete(self, scope: str, key: str, token: str, result: str, ttl: float) -> None:
        """Record the claim's result, to be returned to duplicates for ``ttl`` seconds."""
        record = self._scopes.get(scope, {}).get(key)
        if record is not None and record[_TOKEN] == token:
            record[_RESULT] = result
            record[_EXPIRES_AT] = self._clock() + ttl

    async def release(self, scope: str, key: str, token: str) -> None:
        """Delete the claim (the handler failed), so that the key can be claimed again."""
        records = self._scopes.get(scope, {})
        record = records.get(key)
        if record is not None and record[_TOKEN] == token:
            del records[key]

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records; return how many went."""
        if limit < 0:
            raise InvalidArgumentError(f"limit must not be negative: {limit}")
        now = self._clock()
        deleted = 0
        for records in self._scopes.values():
            expired = [key for key, record in records.items() if record[_EXPIRES_AT] <= now]
            for key in expired[: limit - deleted]:
                del records[key]
            deleted += min(len(expired), limit - deleted)
            if deleted == limit:
                break
        return deleted


class ScopeRecords:
    """One scope's records in an :class:`InMemoryIdempotencyStore`, claimed synchronously.

    The claim is the record itself: :attr:`complete` writes into it, and :attr:`release`
    deletes it only while it is still the key's record. A holder whose lease ended and
    whose key was claimed again (or cleaned up) then writes into a record no longer in
    the store, which nothing reads: the new holder's record is untouched, as a token
    check would have it.

    The three operations are functions made per scope, not methods: a closure reads
    the scope's dictionary and clock faster than a method reads them from ``self``.

    Attributes:
        claim: ``claim(key, fingerprint, lease)``: claim ``key`` for ``lease`` seconds
            (a new :data:`Record`), or report who has it.
        complete: ``complete(record, result, ttl)``: record the claim's result, to be
            returned to duplicates for ``ttl`` seconds.
        release: ``release(key, record)``: delete the claim (the handler failed), if it
            is still the key's record.
    """

    __slots__ = ("claim", "complete", "release")

    claim: Callable[[str, str, float], Record | Completed | InProgress | Mismatch]
    complete: Callable[[Record, str, float], None]
    release: Callable[[str, Record], None]

    def __init__(self, records: dict[str, Record], clock: Callable[[], float]) -> None:
        def claim(
            key: str, fingerprint: str, lease: float
        ) -> Record | Completed | InProgress | Mismatch:
            now = clock()
            record = records.get(key)
            if record is None or record[_EXPIRES_AT] <= now:
                record = records[key] = [fingerprint, None, now + lease, None]
                return record
            return live_outcome(
                fingerprint, record[_FINGERPRINT], record[_RESULT], record[_EXPIRES_AT]
            )

        def complete(record: Record, result: str, ttl: float) -> None:
            record[_RESULT] = result
            record[_EXPIRES_AT] = clock() + ttl

        def release(key: str, record: Record) -> None:
            if records.get(key) is record:
                del records[key]

        self.claim, self.complete, self.release = claim, complete, release
