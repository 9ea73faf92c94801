"""The in-memory idempotency store's scoped records: the middleware's synchronous claims."""

from __future__ import annotations

import pytest

from messagebus.idempotency import (
    Claimed,
    Completed,
    InMemoryIdempotencyStore,
    InProgress,
    Mismatch,
)
from tests.test_idempotency import Clock

pytestmark = pytest.mark.anyio


class TestScopeRecords:
    """A claim is its record: completing or releasing it never touches a newer holder's."""

    def test_claim_complete_duplicate(self) -> None:
        """Claimed, then in progress for others; completed, the result for duplicates."""
        records = InMemoryIdempotencyStore(clock=Clock(1_000.0)).scope("charge")
        claimed = records.claim("k", "fp", 30.0)
        assert type(claimed) is list
        assert records.claim("k", "fp", 30.0) == InProgress(1_030.0)
        records.complete(claimed, "2:null", 60.0)
        assert records.claim("k", "fp", 30.0) == Completed("2:null")
        assert records.claim("k", "other", 30.0) == Mismatch("fp")

    def test_a_released_claim_can_be_claimed_again(self) -> None:
        """Releasing deletes the record: the next claim is a new one."""
        records = InMemoryIdempotencyStore(clock=Clock(1_000.0)).scope("charge")
        claimed = records.claim("k", "fp", 30.0)
        assert type(claimed) is list
        records.release("k", claimed)
        assert type(records.claim("k", "fp", 30.0)) is list

    def test_a_holder_past_its_lease_cannot_touch_the_new_claim(self) -> None:
        """The late holder's completion and release leave the new holder's record alone."""
        now = Clock(1_000.0)
        records = InMemoryIdempotencyStore(clock=now).scope("charge")
        late = records.claim("k", "fp", 30.0)
        now.now += 30.0
        current = records.claim("k", "fp", 30.0)
        assert type(late) is list
        assert type(current) is list
        assert current is not late
        records.complete(late, "2:1", 60.0)
        records.release("k", late)
        assert records.claim("k", "fp", 30.0) == InProgress(1_060.0)
        records.complete(current, "2:2", 60.0)
        assert records.claim("k", "fp", 30.0) == Completed("2:2")

    async def test_scopes_share_the_async_methods_records(self) -> None:
        """One record seen by both ways in; scopes are separate; a fast claim has no token."""
        store = InMemoryIdempotencyStore(clock=Clock(1_000.0))
        claimed = store.scope("charge").claim("k", "fp", 30.0)
        assert type(claimed) is list
        assert await store.claim("charge", "k", "fp", 30.0) == InProgress(1_030.0)
        assert isinstance(await store.claim("refund", "k", "fp", 30.0), Claimed)
        # The async methods act only with the claim's token; the fast path's has none.
        await store.complete("charge", "k", "1", "2:1", 60.0)
        await store.release("charge", "k", "1")
        assert await store.claim("charge", "k", "fp", 30.0) == InProgress(1_030.0)
        store.scope("charge").complete(claimed, "2:3", 60.0)
        assert await store.claim("charge", "k", "fp", 30.0) == Completed("2:3")

    async def test_cleanup_counts_across_scopes(self) -> None:
        """Expired records of every scope go, at most ``limit`` per call."""
        now = Clock(1_000.0)
        store = InMemoryIdempotencyStore(clock=now)
        for scope in ("a", "b", "c"):
            for key in ("1", "2"):
                assert type(store.scope(scope).claim(key, "fp", 10.0)) is list
        assert type(store.scope("c").claim("live", "fp", 100.0)) is list
        now.now += 10.0
        assert await store.cleanup(4) == 4
        assert await store.cleanup(4) == 2
        assert await store.cleanup(4) == 0
        assert store.scope("c").claim("live", "fp", 1.0) == InProgress(1_100.0)
