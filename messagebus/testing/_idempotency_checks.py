"""The idempotency store conformance checks: one coroutine per part of the contract.

Each ``check_idempotency_*`` takes an :class:`IdempotencyHarness`, opens stores with it
and raises :class:`AssertionError` saying what went wrong, or
:class:`~messagebus.testing.NotApplicable` when the store cannot take the checks' clock
and the check needs to move time. Nothing here imports a test framework; see
:mod:`messagebus.testing` for running them from pytest, or run them all with
:func:`check_idempotency_store`. The contract is
:class:`~messagebus.idempotency.IdempotencyStore`'s docstring.

Time never passes for real: the checks give the store a clock they move by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from functools import partial

import attrs

from messagebus.idempotency._store import (
    Claimed,
    ClaimOutcome,
    Completed,
    IdempotencyStore,
    InProgress,
    Mismatch,
)
from messagebus.testing._clock import FakeClock
from messagebus.testing._harness import NotApplicable
from messagebus.testing._store_support import T0, at_once, run_checks

__all__ = [
    "IDEMPOTENCY_CHECKS",
    "IdempotencyCheck",
    "IdempotencyHarness",
    "check_idempotency_cleanup",
    "check_idempotency_completed_returns_the_result",
    "check_idempotency_concurrent_claims",
    "check_idempotency_first_claim",
    "check_idempotency_lease_expiry",
    "check_idempotency_mismatch",
    "check_idempotency_release",
    "check_idempotency_scopes",
    "check_idempotency_stale_token",
    "check_idempotency_store",
    "check_idempotency_ttl_expiry",
]

SCOPE, KEY, FINGERPRINT = "check_handler", "key-1", "fp-1"
LEASE, TTL = 30.0, 3600.0
RESULTS = (
    '{"receipt": 9, "ok": true}',
    "",
    'Zoë "the" 🦊 — 行\n2\t☃ \\ \' \r\n',
    '{"items": [' + ", ".join(f'{{"id": {n}, "name": "módulo {n}"}}' for n in range(2000)) + "]}",
)


@attrs.frozen
class IdempotencyHarness:
    """How the checks make the idempotency store under test.

    Attributes:
        open: ``open(clock)`` makes a store that reads the time from ``clock`` (seconds
            since the Unix epoch, a callable), as an async context manager. Every call
            within one check must give a store on the same records: a new object on
            the same database (a second one stands for another process), or the same
            object for a store that keeps its records in itself (in memory). Use a
            new harness, on empty records, for each check.
        takes_clock: False if the store keeps its own time (a server's clock): the
            checks that move time are then not applicable.
        concurrency: how many claims of one key the concurrency check makes at once.
    """

    open: Callable[[Callable[[], float]], AbstractAsyncContextManager[IdempotencyStore]]
    takes_clock: bool = True
    concurrency: int = 20


IdempotencyCheck = Callable[[IdempotencyHarness], Awaitable[None]]
"""One idempotency store check."""


def _moves_time(harness: IdempotencyHarness) -> None:
    if not harness.takes_clock:
        raise NotApplicable("the store keeps its own time (takes_clock is False)")


async def _claimed(
    store: IdempotencyStore,
    *,
    scope: str = SCOPE,
    key: str = KEY,
    fingerprint: str = FINGERPRINT,
    lease: float = LEASE,
) -> str:
    outcome = await store.claim(scope, key, fingerprint, lease)
    assert isinstance(outcome, Claimed), (
        f"claim({scope!r}, {key!r}) returned {outcome!r}, want Claimed: the key is free"
    )
    assert outcome.token, "Claimed has an empty token"
    return outcome.token


async def _claim(
    store: IdempotencyStore, *, key: str = KEY, fingerprint: str = FINGERPRINT
) -> ClaimOutcome:
    return await store.claim(SCOPE, key, fingerprint, LEASE)


def _expect(outcome: ClaimOutcome, want: ClaimOutcome, when: str) -> None:
    assert outcome == want, f"{when}: claim returned {outcome!r}, want {want!r}"


async def check_idempotency_first_claim(harness: IdempotencyHarness) -> None:
    """Check that a free key is Claimed; while it runs, a claim is InProgress till the lease end."""
    clock = FakeClock()
    async with harness.open(clock) as store:
        await _claimed(store)
        _expect(await _claim(store), InProgress(T0 + LEASE), "while the holder runs")


async def check_idempotency_concurrent_claims(harness: IdempotencyHarness) -> None:
    """Check the atomic claim: of many claims of one key at once (two store objects), one wins.

    Every other claim sees the winner's lease (:class:`InProgress`). Checked for a new
    key, and for a key whose record a lapsed lease leaves behind (where it applies).
    """
    clock = FakeClock()
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(harness.open(clock)) for _ in range(2)]
        cases = ["a new key"]
        if harness.takes_clock:
            await _claimed(stores[0], key="lapsed")
            await clock.advance(LEASE)
            cases.append("a lapsed lease")
        for case, key in zip(cases, ["new", "lapsed"], strict=False):
            outcomes = await at_once(
                [
                    partial(stores[n % 2].claim, SCOPE, key, FINGERPRINT, LEASE)
                    for n in range(harness.concurrency)
                ]
            )
            winners = [outcome for outcome in outcomes if isinstance(outcome, Claimed)]
            assert len(winners) == 1, (
                f"{harness.concurrency} concurrent claims of {case} made {len(winners)} "
                f"winners, want exactly 1"
            )
            others = {outcome for outcome in outcomes if outcome is not winners[0]}
            want = InProgress(clock.time() + LEASE)
            assert others == {want}, f"the losers of {case} saw {others}, want only {want!r}"


async def check_idempotency_completed_returns_the_result(harness: IdempotencyHarness) -> None:
    """Check that once completed, every claim of the key is Completed with the result, exactly.

    Results are text: JSON, empty, any Unicode with control characters, tens of kilobytes.
    """
    clock = FakeClock()
    async with harness.open(clock) as store:
        for n, result in enumerate(RESULTS):
            key = f"done-{n}"
            token = await _claimed(store, key=key)
            await store.complete(SCOPE, key, token, result, TTL)
            for _ in range(2):
                outcome = await _claim(store, key=key)
                assert outcome == Completed(result), (
                    f"a duplicate of a completed key got {_short(outcome)}, "
                    f"want Completed({_short(result)})"
                )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


async def check_idempotency_mismatch(harness: IdempotencyHarness) -> None:
    """Check that another fingerprint under a live key is a Mismatch naming the stored one."""
    clock = FakeClock()
    async with harness.open(clock) as store:
        token = await _claimed(store)
        _expect(await _claim(store, fingerprint="fp-2"), Mismatch(FINGERPRINT), "in progress")
        await store.complete(SCOPE, KEY, token, "done", TTL)
        _expect(await _claim(store, fingerprint="fp-2"), Mismatch(FINGERPRINT), "completed")
        _expect(await _claim(store), Completed("done"), "same fingerprint after a mismatch")


async def check_idempotency_release(harness: IdempotencyHarness) -> None:
    """Check that release after a failure frees the key: the next claim wins, with a new token."""
    clock = FakeClock()
    async with harness.open(clock) as store:
        first = await _claimed(store)
        await store.release(SCOPE, KEY, first)
        second = await _claimed(store, fingerprint="fp-2")
        assert second != first, "the claim after a release reused the released token"
        _expect(await _claim(store, fingerprint="fp-2"), InProgress(T0 + LEASE), "claimed again")
        await store.release(SCOPE, KEY, first)
        _expect(
            await _claim(store, fingerprint="fp-2"),
            InProgress(T0 + LEASE),
            "after releasing with the first, stale token",
        )


async def check_idempotency_stale_token(harness: IdempotencyHarness) -> None:
    """Check that a holder whose lease lapsed and was taken over cannot complete or release."""
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as store:
        stale = await _claimed(store)
        await clock.advance(LEASE)
        fresh = await _claimed(store)
        await store.complete(SCOPE, KEY, stale, "stale", TTL)
        await store.release(SCOPE, KEY, stale)
        _expect(await _claim(store), InProgress(T0 + 2 * LEASE), "after the stale holder acted")
        await store.complete(SCOPE, KEY, fresh, "fresh", TTL)
        await store.complete(SCOPE, KEY, stale, "stale", TTL)
        await store.release(SCOPE, KEY, stale)
        _expect(await _claim(store), Completed("fresh"), "after the stale holder acted again")


async def check_idempotency_lease_expiry(harness: IdempotencyHarness) -> None:
    """Check that a claim is in progress until its lease ends, and free from then on."""
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as store:
        first = await _claimed(store)
        await clock.advance(LEASE - 0.5)
        _expect(await _claim(store), InProgress(T0 + LEASE), "half a second before the lease end")
        await clock.advance(0.5)
        second = await _claimed(store, fingerprint="fp-2")
        assert second != first, "the claim after the lease reused the lapsed token"
        _expect(
            await _claim(store, fingerprint="fp-2"), InProgress(T0 + 2 * LEASE), "claimed again"
        )


async def check_idempotency_ttl_expiry(harness: IdempotencyHarness) -> None:
    """Check that a completed record answers duplicates for its TTL (from complete), then frees."""
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as store:
        token = await _claimed(store)
        await clock.advance(10)
        await store.complete(SCOPE, KEY, token, "done", TTL)
        await clock.advance(TTL - 1)
        _expect(await _claim(store), Completed("done"), "a second before the TTL ends")
        await clock.advance(1)
        await _claimed(store, fingerprint="fp-2")
        _expect(
            await _claim(store, fingerprint="fp-2"),
            InProgress(clock.time() + LEASE),
            "claimed again",
        )


async def check_idempotency_cleanup(harness: IdempotencyHarness) -> None:
    """Check that cleanup deletes expired records only, ``limit`` at most a call, and counts."""
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as store:
        for n in range(2):
            await _claimed(store, key=f"lapsed-{n}", lease=10)
        for n in range(3):
            token = await _claimed(store, key=f"done-{n}")
            await store.complete(SCOPE, f"done-{n}", token, "done", 10)
        await _claimed(store, key="running", lease=100)
        token = await _claimed(store, key="kept")
        await store.complete(SCOPE, "kept", token, "kept", 100)
        deleted = await store.cleanup()
        assert deleted == 0, f"cleanup deleted {deleted} records before any expired"
        await clock.advance(10)
        deleted = await store.cleanup(limit=0)
        assert deleted == 0, f"cleanup(limit=0) deleted {deleted} records"
        counts = [await store.cleanup(limit=2) for _ in range(4)]
        assert counts == [2, 2, 1, 0], (
            f"cleanup(limit=2) of 5 expired records deleted {counts}, want [2, 2, 1, 0]"
        )
        _expect(await _claim(store, key="running"), InProgress(T0 + 100), "a live lease")
        _expect(await _claim(store, key="kept"), Completed("kept"), "a live completed record")


async def check_idempotency_scopes(harness: IdempotencyHarness) -> None:
    """Check that one key in two scopes is two records, each claimed and settled on its own."""
    clock = FakeClock()
    async with harness.open(clock) as store:
        first = await _claimed(store, scope="a")
        second = await _claimed(store, scope="b", fingerprint="fp-2")
        await store.complete("a", KEY, first, "from a", TTL)
        await store.release("a", KEY, second)
        await store.complete("b", KEY, first, "wrong scope", TTL)
        _expect(await store.claim("a", KEY, FINGERPRINT, LEASE), Completed("from a"), "scope a")
        _expect(await store.claim("b", KEY, "fp-2", LEASE), InProgress(T0 + LEASE), "scope b")


IDEMPOTENCY_CHECKS: tuple[IdempotencyCheck, ...] = (
    check_idempotency_first_claim,
    check_idempotency_concurrent_claims,
    check_idempotency_completed_returns_the_result,
    check_idempotency_mismatch,
    check_idempotency_release,
    check_idempotency_scopes,
    check_idempotency_stale_token,
    check_idempotency_lease_expiry,
    check_idempotency_ttl_expiry,
    check_idempotency_cleanup,
)
"""Every idempotency store check, the basics first."""


async def check_idempotency_store(make: Callable[[], IdempotencyHarness]) -> list[str]:
    """Run every check in :data:`IDEMPOTENCY_CHECKS`, each on ``make()``'s new harness.

    Returns the names of the checks that were not applicable.

    Raises:
        AssertionError: the first check that failed, its name first in the message.
    """
    return await run_checks(IDEMPOTENCY_CHECKS, make)
