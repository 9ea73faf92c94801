"""The store conformance checks catch broken stores: each fault fails the check for it.

The faulty stores (tests/faulty_stores.py) pass every check with no fault switched on,
so each failure below is the fault's doing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import pytest

from messagebus import WireCodec
from messagebus.eventlog import InMemoryEventLog
from messagebus.testing import (
    DEAD_LETTER_CHECKS,
    EVENT_LOG_CHECKS,
    IDEMPOTENCY_CHECKS,
    OUTBOX_CHECKS,
    DeadLetterHarness,
    EventLogHarness,
    IdempotencyHarness,
    NotApplicable,
    OutboxHarness,
    check_dead_letter_store,
    check_dead_letters_concurrent_writers,
    check_dead_letters_delete,
    check_dead_letters_list_filters,
    check_dead_letters_list_order,
    check_dead_letters_purge,
    check_dead_letters_replace,
    check_dead_letters_round_trip,
    check_event_log,
    check_event_log_append_only,
    check_event_log_checkpoints,
    check_event_log_commands_refused,
    check_event_log_concurrent_appends,
    check_event_log_numbering,
    check_event_log_read_paging,
    check_event_log_read_stream_paging,
    check_event_log_round_trip,
    check_event_log_unencodable_refused,
    check_idempotency_cleanup,
    check_idempotency_completed_returns_the_result,
    check_idempotency_concurrent_claims,
    check_idempotency_first_claim,
    check_idempotency_lease_expiry,
    check_idempotency_mismatch,
    check_idempotency_release,
    check_idempotency_scopes,
    check_idempotency_stale_token,
    check_idempotency_store,
    check_idempotency_ttl_expiry,
    check_outbox_claim_order,
    check_outbox_cleanup,
    check_outbox_commit,
    check_outbox_concurrent_relays,
    check_outbox_dead_and_requeue,
    check_outbox_group_backoff,
    check_outbox_group_order,
    check_outbox_lease_expiry,
    check_outbox_release,
    check_outbox_retry_backoff,
    check_outbox_rollback,
    check_outbox_status,
    check_outbox_store,
)
from tests.faulty_stores import (
    DeletingEventLog,
    FaultyDeadLetterStore,
    FaultyEventLog,
    FaultyIdempotencyStore,
    FaultyOutbox,
    ForgetfulEventLog,
)

pytestmark = pytest.mark.anyio


def once(make: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Open one store, made on the first call's argument, for every call (one process)."""
    made: list[Any] = []

    def open_store(argument: Any) -> Any:
        if not made:
            made.append(make(argument))
        return nullcontext(made[0])

    return open_store


def idempotency(*faults: str, takes_clock: bool = True) -> IdempotencyHarness:
    return IdempotencyHarness(
        once(lambda clock: FaultyIdempotencyStore(clock, faults)), takes_clock=takes_clock
    )


def outbox(*faults: str, takes_clock: bool = True) -> OutboxHarness:
    return OutboxHarness(once(lambda clock: FaultyOutbox(clock, faults)), takes_clock=takes_clock)


def dead_letters(*faults: str) -> DeadLetterHarness:
    store = FaultyDeadLetterStore(faults)
    return DeadLetterHarness(lambda: nullcontext(store))


def event_log(*faults: str, log_type: type[InMemoryEventLog] = FaultyEventLog) -> EventLogHarness:
    def make(codec: WireCodec) -> InMemoryEventLog:
        log = log_type(codec=codec)
        if isinstance(log, FaultyEventLog):
            log.faults = frozenset(faults)
        return log

    return EventLogHarness(once(make))


def by_name(value: object) -> str | None:
    return getattr(value, "__name__", None)


class TestIdempotencyFaults:
    """Each idempotency check fails, saying what went wrong, on a store with its fault."""

    @pytest.mark.parametrize(
        ("check", "fault", "complaint"),
        [
            (check_idempotency_first_claim, "always-claimed", "while the holder runs"),
            (check_idempotency_concurrent_claims, "racy", "made 20 winners, want exactly 1"),
            (check_idempotency_completed_returns_the_result, "truncate", "a duplicate of"),
            (check_idempotency_mismatch, "ignore-fingerprint", "want Mismatch"),
            (check_idempotency_release, "no-release", "returned Mismatch"),
            (check_idempotency_scopes, "no-scopes", "want Claimed"),
            (check_idempotency_stale_token, "ignore-token", "after the stale holder acted"),
            (check_idempotency_lease_expiry, "never-expire", "want Claimed"),
            (check_idempotency_ttl_expiry, "forever", "want Claimed"),
            (check_idempotency_cleanup, "cleanup-ignores-limit", "cleanup(limit=0) deleted 5"),
        ],
        ids=by_name,
    )
    async def test_fault_fails_its_check(self, check: Any, fault: str, complaint: str) -> None:
        """The check raises AssertionError naming the violation."""
        with pytest.raises(AssertionError) as raised:
            await check(idempotency(fault))
        assert complaint in str(raised.value)

    async def test_a_correct_store_passes_every_check(self) -> None:
        """With no fault the fake passes all, so the failures above are the faults'."""
        assert await check_idempotency_store(idempotency) == []
        assert len(IDEMPOTENCY_CHECKS) == 10

    async def test_a_store_with_its_own_time_skips_the_clock_checks(self) -> None:
        """takes_clock=False: the checks that move time are not applicable, the rest run."""
        skipped = await check_idempotency_store(lambda: idempotency(takes_clock=False))
        assert skipped == [
            "check_idempotency_stale_token",
            "check_idempotency_lease_expiry",
            "check_idempotency_ttl_expiry",
            "check_idempotency_cleanup",
        ]
        with pytest.raises(NotApplicable, match="takes_clock is False"):
            await check_idempotency_lease_expiry(idempotency(takes_clock=False))

    async def test_the_runner_names_the_failing_check(self) -> None:
        """check_idempotency_store's AssertionError starts with the check's name."""
        with pytest.raises(AssertionError, match=r"^check_idempotency_first_claim: "):
            await check_idempotency_store(lambda: idempotency("always-claimed"))


class TestOutboxFaults:
    """Each outbox check fails, saying what went wrong, on a store with its fault."""

    @pytest.mark.parametrize(
        ("check", "fault", "complaint"),
        [
            (check_outbox_commit, "lossy", "want the committed"),
            (check_outbox_rollback, "no-rollback", "listeners heard"),
            (check_outbox_claim_order, "newest-first", "a claim of 2: claimed"),
            (check_outbox_release, "release-counts-attempt", "a release counted 1 attempt"),
            (check_outbox_dead_and_requeue, "requeue-keeps-attempts", "requeue left 1 attempt"),
            (check_outbox_group_order, "no-groups", "with g's first row leased"),
            (check_outbox_concurrent_relays, "racy-claim", "claimed more than once"),
            (check_outbox_lease_expiry, "ignores-owner", "after the lost relay settled"),
            (check_outbox_retry_backoff, "no-backoff", "before the retry's delay ends"),
            (check_outbox_group_backoff, "backoff-frees-group", "backing off: claimed"),
            (check_outbox_status, "in-flight-as-pending", "status is"),
            (check_outbox_cleanup, "cleanup-all-sent", "none sent 200 s ago"),
        ],
        ids=by_name,
    )
    async def test_fault_fails_its_check(self, check: Any, fault: str, complaint: str) -> None:
        """The check raises AssertionError naming the violation."""
        with pytest.raises(AssertionError) as raised:
            await check(outbox(fault))
        assert complaint in str(raised.value)

    async def test_group_order_also_holds_for_claims_of_given_ids(self) -> None:
        """Ignoring rows left out of a claim of ids lets a later row of a group jump ahead."""
        with pytest.raises(AssertionError, match="with its second pending"):
            await check_outbox_group_order(outbox("ids-jump-groups"))

    async def test_a_correct_store_passes_every_check(self) -> None:
        """With no fault the fake passes all, so the failures above are the faults'."""
        assert await check_outbox_store(outbox) == []
        assert len(OUTBOX_CHECKS) == 12

    async def test_a_store_with_its_own_time_skips_the_clock_checks(self) -> None:
        """takes_clock=False: the checks that move time are not applicable, the rest run."""
        skipped = await check_outbox_store(lambda: outbox(takes_clock=False))
        assert skipped == [
            "check_outbox_lease_expiry",
            "check_outbox_retry_backoff",
            "check_outbox_group_backoff",
            "check_outbox_status",
            "check_outbox_cleanup",
        ]


class TestDeadLetterFaults:
    """Each dead-letter check fails, saying what went wrong, on a store with its fault."""

    @pytest.mark.parametrize(
        ("check", "fault", "complaint"),
        [
            (check_dead_letters_round_trip, "lossy", "not what was added"),
            (check_dead_letters_replace, "keep-first", "after a replace get returned"),
            (check_dead_letters_list_order, "unordered", "want oldest first"),
            (check_dead_letters_list_filters, "until-inclusive", "list(until=the 3rd's time)"),
            (check_dead_letters_delete, "delete-says-true", "a second delete of one id"),
            (check_dead_letters_purge, "purge-ignores-handler", "purge(handler='a', until"),
            (check_dead_letters_concurrent_writers, "racy", "concurrent adds left"),
        ],
        ids=by_name,
    )
    async def test_fault_fails_its_check(self, check: Any, fault: str, complaint: str) -> None:
        """The check raises AssertionError naming the violation."""
        with pytest.raises(AssertionError) as raised:
            await check(dead_letters(fault))
        assert complaint in str(raised.value)

    async def test_a_correct_store_passes_every_check(self) -> None:
        """With no fault the fake passes all, so the failures above are the faults'."""
        assert await check_dead_letter_store(dead_letters) == []
        assert len(DEAD_LETTER_CHECKS) == 7


class TestEventLogFaults:
    """Each event log check fails, saying what went wrong, on a log with its fault."""

    @pytest.mark.parametrize(
        ("check", "fault", "complaint"),
        [
            (check_event_log_numbering, "last-position-off", "empty log is 1"),
            (check_event_log_round_trip, "read-drops-headers", "read returned other"),
            (check_event_log_read_paging, "read-ignores-limit", "read(4, 3) returned"),
            (check_event_log_read_stream_paging, "stream-from-ignored", "'even', 2, None"),
            (check_event_log_append_only, DeletingEventLog, "delete_stream"),
            (check_event_log_commands_refused, "accepts-commands", "did not raise"),
            (check_event_log_unencodable_refused, "one-by-one", "holds positions [1]"),
            (check_event_log_concurrent_appends, "one-by-one", "not consecutive"),
            (check_event_log_checkpoints, ForgetfulEventLog, "after reset"),
        ],
        ids=by_name,
    )
    async def test_fault_fails_its_check(
        self, check: Any, fault: str | type[InMemoryEventLog], complaint: str
    ) -> None:
        """The check raises AssertionError naming the violation."""
        faulty = event_log(fault) if isinstance(fault, str) else event_log(log_type=fault)
        with pytest.raises(AssertionError) as raised:
            await check(faulty)
        assert complaint in str(raised.value)

    async def test_a_correct_log_passes_every_check(self) -> None:
        """With no fault the fake passes all, so the failures above are the faults'."""
        assert await check_event_log(event_log) == []
        assert len(EVENT_LOG_CHECKS) == 9
