"""Testing helpers that are public API: the transport conformance suite.

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
"""

from messagebus.testing._harness import CODEC, NotApplicable, Probe, TransportHarness
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
    "TRANSPORT_CHECKS",
    "NotApplicable",
    "Probe",
    "TransportCheck",
    "TransportHarness",
    "check_close_loses_nothing",
    "check_dead_letter",
    "check_delay",
    "check_destination_not_found",
    "check_extend",
    "check_fifo_deduplication",
    "check_group_order",
    "check_many_producers_and_consumers",
    "check_nack_redelivers",
    "check_provision_is_idempotent",
    "check_queue_isolation",
    "check_restart_continues",
    "check_round_trip",
    "check_size_limit",
    "check_topic_fan_out",
    "check_transport",
    "check_visibility_timeout",
]
