"""The conformance suite catches broken transports: each fault fails the check for it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import pytest

from messagebus import DestinationNotFoundError
from messagebus.extension import Delivery
from messagebus.testing import (
    TRANSPORT_CHECKS,
    NotApplicable,
    TransportCheck,
    TransportHarness,
    check_close_loses_nothing,
    check_dead_letter,
    check_delay,
    check_destination_not_found,
    check_extend,
    check_fifo_deduplication,
    check_group_order,
    check_many_producers_and_consumers,
    check_nack_redelivers,
    check_round_trip,
    check_size_limit,
    check_topic_fan_out,
    check_transport,
    check_visibility_timeout,
)
from messagebus.transports import Capabilities, Outgoing, QueueSpec, Topology
from messagebus.transports.memory import MEMORY_CAPABILITIES, InMemoryTransport, MemoryBroker
from messagebus.transports.memory._queue import QueueState

pytestmark = pytest.mark.anyio


class Forwarding:
    """A delivery that forwards to another; faults override one method."""

    def __init__(self, inner: Delivery) -> None:
        self.inner = inner
        self.body = inner.body
        self.queue = inner.queue
        self.receive_count = inner.receive_count

    async def ack(self) -> None:
        await self.inner.ack()

    async def nack(self, delay: float = 0.0) -> None:
        await self.inner.nack(delay)

    async def extend(self, visibility: float) -> None:
        await self.inner.extend(visibility)


class IgnoresNackDelay(Forwarding):
    async def nack(self, delay: float = 0.0) -> None:
        await self.inner.nack()


class IgnoresExtend(Forwarding):
    async def extend(self, visibility: float) -> None:
        pass


class AlreadyAcked(Forwarding):
    async def ack(self) -> None:
        pass


class Faulty(InMemoryTransport):
    """The memory transport with faults switched on by name."""

    faults: frozenset[str] = frozenset()
    delivery: type[Forwarding] = Forwarding

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        try:
            await super().send(queue, self._spoil(messages))
        except DestinationNotFoundError:
            if "no-not-found" not in self.faults:
                raise

    def _spoil(self, messages: Sequence[Outgoing]) -> list[Outgoing]:
        spoilt = list(messages)
        if "drop" in self.faults:
            spoilt = [m for m in spoilt if b'"text":"m7"' not in m.body]
        if "twice" in self.faults:
            spoilt = spoilt * 2
        if "garble" in self.faults:
            spoilt = [attrs.evolve(m, body=m.body + b" ") for m in spoilt]
        if "reverse" in self.faults:
            spoilt.reverse()
        if "no-delay" in self.faults:
            spoilt = [attrs.evolve(m, delay=0.0) for m in spoilt]
        return spoilt

    async def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        if "leak" not in self.faults:
            await super().publish(topic, messages)
            return
        self.broker.subscribers(topic)
        for queue in list(self.broker._queues):
            await super().send(queue, messages)

    async def provision(self, topology: Topology) -> None:
        if "no-dlq" in self.faults:
            queues = tuple(attrs.evolve(spec, max_receives=None) for spec in topology.queues)
            topology = attrs.evolve(topology, queues=queues)
        await super().provision(topology)

    async def receive(  # type: ignore[override]  # wrapped deliveries, not MemoryDelivery
        self,
        queue: str,
        *,
        max_messages: int = 10,
        wait: float = 20.0,
        visibility_timeout: float | None = None,
    ) -> Sequence[Delivery]:
        if "no-visibility" in self.faults:
            visibility_timeout = None
        deliveries = await super().receive(
            queue, max_messages=max_messages, wait=wait, visibility_timeout=visibility_timeout
        )
        if "at-most-once" in self.faults:
            for delivery in deliveries:
                await delivery.ack()
            return [AlreadyAcked(delivery) for delivery in deliveries]
        return [self.delivery(delivery) for delivery in deliveries]

    def _check_outgoing(self, targets: Sequence[QueueState], messages: Sequence[Outgoing]) -> None:
        if "no-size-check" not in self.faults:
            super()._check_outgoing(targets, messages)

    @property
    def capabilities(self) -> Capabilities:
        if "basic" in self.faults:
            return attrs.evolve(MEMORY_CAPABILITIES, ordered_groups=False, fan_out=False)
        return MEMORY_CAPABILITIES


def harness(*faults: str, delivery: type[Forwarding] = Forwarding) -> TransportHarness:
    broker = MemoryBroker()

    def open_transport() -> Faulty:
        transport = Faulty(broker)
        transport.faults = frozenset(faults)
        transport.delivery = delivery
        return transport

    return TransportHarness(open_transport, messages=100, short=0.05, patience=1.0)


class TestFaultsAreCaught:
    """Each check fails, saying what went wrong, on a transport with its fault."""

    @pytest.mark.parametrize(
        ("check", "faulty", "complaint"),
        [
            (check_round_trip, harness("garble"), "the body changed"),
            (check_many_producers_and_consumers, harness("drop"), "99 of 100 messages arrived"),
            (check_many_producers_and_consumers, harness("twice"), "not a redelivery"),
            (check_topic_fan_out, harness("leak"), "should not have"),
            (check_nack_redelivers, harness(delivery=IgnoresNackDelay), "visible after"),
            (check_visibility_timeout, harness("no-visibility"), "0 of 1 message(s) arrived"),
            (check_extend, harness(delivery=IgnoresExtend), "should not have"),
            (check_delay, harness("no-delay"), "delayed 0.05 s arrived after"),
            (check_dead_letter, harness("no-dlq"), "received 3 times"),
            (check_group_order, harness("reverse"), "arrived as"),
            (check_fifo_deduplication, harness("reverse"), "received ['same key'"),
            (check_close_loses_nothing, harness("at-most-once"), "5 of 25 message(s) arrived"),
            (check_size_limit, harness("no-size-check"), "1048577-byte body was accepted"),
            (check_destination_not_found, harness("no-not-found"), "send to"),
        ],
        ids=lambda value: getattr(value, "__name__", None),
    )
    async def test_fault_fails_its_check(
        self, check: TransportCheck, faulty: TransportHarness, complaint: str
    ) -> None:
        """The check raises AssertionError naming the violation."""
        with pytest.raises(AssertionError) as raised:
            await check(faulty)
        assert complaint in str(raised.value)

    async def test_check_transport_names_the_failing_check(self) -> None:
        """check_transport's AssertionError starts with the check's name."""
        with pytest.raises(AssertionError, match=r"^check_round_trip: the body changed"):
            await check_transport(harness("garble"))


class TestCapabilities:
    """Checks a transport's capabilities rule out are not applicable, not failed."""

    @pytest.mark.parametrize("check", [check_topic_fan_out, check_group_order])
    async def test_moot_checks_say_so(self, check: TransportCheck) -> None:
        """Without FIFO queues or fan-out those checks raise NotApplicable."""
        with pytest.raises(NotApplicable):
            await check(harness("basic"))

    async def test_check_transport_runs_the_rest(self) -> None:
        """On a basic transport every other check passes; the moot ones are listed."""
        skipped = await check_transport(harness("basic"))
        assert skipped == ["check_topic_fan_out", "check_group_order", "check_fifo_deduplication"]
        assert len(TRANSPORT_CHECKS) == 16


class TestHarness:
    """The harness names things uniquely, so a server that is never reset can be reused."""

    def test_names_are_fresh_and_valid(self) -> None:
        """Two names for one purpose differ, and fit an SQS queue name with .fifo."""
        make: Callable[[str], str] = harness().name
        first, second = make("purpose"), make("purpose")
        assert first != second
        assert first.startswith("conformance-")
        assert first.endswith("-purpose")
        assert len(QueueSpec(first).dead_letter_queue + ".fifo") <= 80
