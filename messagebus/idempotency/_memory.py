"""Idempotency records in a dictionary, for one process."""

from __future__ import annotations

import itertools
import time

import attrs

from messagebus._clock import TimeSource, wall_time
from messagebus._errors import InvalidArgumentError
from messagebus.idempotency._store import Claimed, ClaimOutcome, live_outcome

__all__ = ["InMemoryIdempotencyStore"]


@attrs.define
class _Record:
    fingerprint: str
    token: str
    expires_at: float  # the lease's end while in progress, the TTL's end once completed
    result: str | None = None  # None while in progress


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
        self._records: dict[tuple[str, str], _Record] = {}
        self._clock = wall_time(clock)
        # A token needs to differ from this store's other tokens only: a counter does,
        # for a twentieth of a UUIDv7's cost.
        self._tokens = itertools.count(1)

    async def claim(self, scope: str, key: str, fingerprint: str, lease: float) -> ClaimOutcome:
        """Claim ``key`` in ``scope`` for ``lease`` seconds, or report who has it."""
        now = self._clock()
        record = self._records.get((scope, key))
        if record is None or record.expires_at <= now:
            token = str(next(self._tokens))
            self._records[scope, key] = _Record(fingerprint, token, now + lease)
            return Claimed(token)
        return live_outcome(fingerprint, record.fingerprint, record.result, record.expires_at)

    async def complete(self, scope: str, key: str, token: str, result: str, ttl: float) -> None:
        """Record the claim's result, to be returned to duplicates for ``ttl`` seconds."""
        record = self._records.get((scope, key))
        if record is not None and record.token == token:
            record.result = result
            record.expires_at = self._clock() + ttl

    async def release(self, scope: str, key: str, token: str) -> None:
        """Delete the claim (the handler failed), so that the key can be claimed again."""
        record = self._records.get((scope, key))
        if record is not None and record.token == token:
            del self._records[scope, key]

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records; return how many went."""
        if limit < 0:
            raise InvalidArgumentError(f"limit must not be negative: {limit}")
        now = self._clock()
        expired = [key for key, record in self._records.items() if record.expires_at <= now]
        for key in expired[:limit]:
            del self._records[key]
        return min(len(expired), limit)
