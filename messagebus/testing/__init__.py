"""Testing helpers that are public API: the application test kit, the conformance suites.

For the tests of an application's own handlers (see the README's testing section):
:class:`BusRecorder` records what leaves the handlers of a bus (:class:`Recorded`, with
:func:`record_outgoing` as the bus's outgoing hook to see everything that leaves the
process) and asserts on it; :func:`replace_handler` and :func:`replace_subscriber` swap a
handler for one block; :func:`run_until_idle` runs a service on the memory transport
until nothing is left to do (:class:`Idle`); :class:`BusHarness` bundles them around one
running bus, and drives a process manager (:class:`ProcessUnderTest`): given messages,
its state, the timeouts it scheduled, the fake clock advanced to fire them.

Every transport must pass :data:`TRANSPORT_CHECKS` (each a ``check_*`` coroutine taking
a :class:`TransportHarness`). Nothing here imports a test framework; with pytest::

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", TRANSPORT_CHECKS, ids=lambda check: check.__name__)
    async def test_conformance(check: TransportCheck) -> None:
        broker = MemoryBroker()
        try:
            await check(TransportHarness(lambda: InMemoryTransport(broker), short=0.1))
        except NotApplicable as reason:
            pytest.skip(str(reason))

Every store must pass the checks of its family, each a ``check_*`` coroutine taking a
harness whose ``open`` makes the store: :data:`IDEMPOTENCY_CHECKS`
(:class:`IdempotencyHarness`, ``open(clock)``), :data:`OUTBOX_CHECKS`
(:class:`OutboxHarness`, ``open(clock)``), :data:`DEAD_LETTER_CHECKS`
(:class:`DeadLetterHarness`, ``open()``), :data:`EVENT_LOG_CHECKS`
(:class:`EventLogHarness`, ``open(codec)``) and :data:`PROCESS_CHECKS`
(:class:`ProcessHarness`, ``open(clock)`` making the :class:`ProcessStores` of one
database object). Give each check a new harness on empty
records; the checks move the clock they pass by hand, never sleeping. With pytest::

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", IDEMPOTENCY_CHECKS, ids=lambda check: check.__name__)
    async def test_idempotency(check: IdempotencyCheck, redis_url: str) -> None:
        prefix = uuid.uuid4().hex  # empty records for each check
        harness = IdempotencyHarness(lambda clock: RedisStore(redis_url, prefix, clock=clock))
        try:
            await check(harness)
        except NotApplicable as reason:
            pytest.skip(str(reason))
"""

from messagebus.testing._bus_harness import BusHarness
from messagebus.testing._clock import EPOCH, FakeClock
from messagebus.testing._dead_letter_checks import (
    DEAD_LETTER_CHECKS,
    DeadLetterCheck,
    DeadLetterHarness,
    check_dead_letter_store,
    check_dead_letters_concurrent_writers,
    check_dead_letters_delete,
    check_dead_letters_list_filters,
    check_dead_letters_list_order,
    check_dead_letters_purge,
    check_dead_letters_replace,
    check_dead_letters_round_trip,
)
from messagebus.testing._event_log_checks import (
    EVENT_LOG_CHECKS,
    LOG_CODEC,
    EventLogCheck,
    EventLogHarness,
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
)
from messagebus.testing._harness import CODEC, NotApplicable, Probe, TransportHarness
from messagebus.testing._idempotency_checks import (
    IDEMPOTENCY_CHECKS,
    IdempotencyCheck,
    IdempotencyHarness,
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
)
from messagebus.testing._idle import Idle, run_until_idle
from messagebus.testing._outbox_checks import (
    OUTBOX_CHECKS,
    OutboxCheck,
    OutboxHarness,
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
from messagebus.testing._process import ProcessUnderTest
from messagebus.testing._process_checks import (
    PROCESS_CHECKS,
    ProcessCheck,
    ProcessHarness,
    ProcessStores,
    check_process_crash_between_commit_and_relay,
    check_process_start_and_load,
    check_process_start_race,
    check_process_store,
    check_process_timeout_after_completion,
    check_process_tombstone_retention,
    check_process_update_race,
    check_process_version_check,
)
from messagebus.testing._recorder import BusRecorder, Recorded, record_outgoing
from messagebus.testing._replace import replace_handler, replace_subscriber
from messagebus.testing._transport_checks import (
    TRANSPORT_CHECKS,
    TransportCheck,
    check_close_loses_nothing,
    check_dead_letter,
    check_delay,
    check_destination_not_found,
    check_extend,
    check_fifo_deduplication,
    check_group_order,
    check_many_producers_and_consumers,
    check_nack_redelivers,
    check_provision_is_idempotent,
    check_queue_isolation,
    check_restart_continues,
    check_round_trip,
    check_size_limit,
    check_topic_fan_out,
    check_transport,
    check_visibility_timeout,
)

__all__ = [
    "CODEC",
    "DEAD_LETTER_CHECKS",
    "EPOCH",
    "EVENT_LOG_CHECKS",
    "IDEMPOTENCY_CHECKS",
    "LOG_CODEC",
    "OUTBOX_CHECKS",
    "PROCESS_CHECKS",
    "TRANSPORT_CHECKS",
    "BusHarness",
    "BusRecorder",
    "DeadLetterCheck",
    "DeadLetterHarness",
    "EventLogCheck",
    "EventLogHarness",
    "FakeClock",
    "IdempotencyCheck",
    "IdempotencyHarness",
    "Idle",
    "NotApplicable",
    "OutboxCheck",
    "OutboxHarness",
    "Probe",
    "ProcessCheck",
    "ProcessHarness",
    "ProcessStores",
    "ProcessUnderTest",
    "Recorded",
    "TransportCheck",
    "TransportHarness",
    "check_close_loses_nothing",
    "check_dead_letter",
    "check_dead_letter_store",
    "check_dead_letters_concurrent_writers",
    "check_dead_letters_delete",
    "check_dead_letters_list_filters",
    "check_dead_letters_list_order",
    "check_dead_letters_purge",
    "check_dead_letters_replace",
    "check_dead_letters_round_trip",
    "check_delay",
    "check_destination_not_found",
    "check_event_log",
    "check_event_log_append_only",
    "check_event_log_checkpoints",
    "check_event_log_commands_refused",
    "check_event_log_concurrent_appends",
    "check_event_log_numbering",
    "check_event_log_read_paging",
    "check_event_log_read_stream_paging",
    "check_event_log_round_trip",
    "check_event_log_unencodable_refused",
    "check_extend",
    "check_fifo_deduplication",
    "check_group_order",
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
    "check_many_producers_and_consumers",
    "check_nack_redelivers",
    "check_outbox_claim_order",
    "check_outbox_cleanup",
    "check_outbox_commit",
    "check_outbox_concurrent_relays",
    "check_outbox_dead_and_requeue",
    "check_outbox_group_backoff",
    "check_outbox_group_order",
    "check_outbox_lease_expiry",
    "check_outbox_release",
    "check_outbox_retry_backoff",
    "check_outbox_rollback",
    "check_outbox_status",
    "check_outbox_store",
    "check_process_crash_between_commit_and_relay",
    "check_process_start_and_load",
    "check_process_start_race",
    "check_process_store",
    "check_process_timeout_after_completion",
    "check_process_tombstone_retention",
    "check_process_update_race",
    "check_process_version_check",
    "check_provision_is_idempotent",
    "check_queue_isolation",
    "check_restart_continues",
    "check_round_trip",
    "check_size_limit",
    "check_topic_fan_out",
    "check_transport",
    "check_visibility_timeout",
    "record_outgoing",
    "replace_handler",
    "replace_subscriber",
    "run_until_idle",
]
