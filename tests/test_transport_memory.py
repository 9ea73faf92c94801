"""The in-memory transport's own behaviour, on a fake clock where time matters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import attrs
import pytest

from messagebus import (
    ConfigurationError,
    DeliveryExpiredError,
    DestinationNotFoundError,
    MessageTooLargeError,
    TransportUnavailableError,
)
from messagebus.extension import Delivery, Transport
from messagebus.transports import Outgoing, QueueSpec, TopicSpec, TopicSubscription, Topology
from messagebus.transports.memory import (
    MEMORY_CAPABILITIES,
    InMemoryTransport,
    MemoryBroker,
    QueueDepth,
)

pytestmark = pytest.mark.anyio

T0 = 1000.0
QUEUE = "orders"
FIFO = "ledger"
TOPIC = "order-events"


@attrs.define
class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


TOPOLOGY = Topology(
    queues=(
        QueueSpec(QUEUE, visibility_timeout=30.0, max_receives=3),
        QueueSpec(FIFO, fifo=True, visibility_timeout=30.0, max_receives=2),
        QueueSpec("audit", max_receives=None),
    ),
    topics=(TopicSpec(TOPIC),),
    subscriptions=(TopicSubscription(TOPIC, QUEUE), TopicSubscription(TOPIC, "audit")),
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def transport(clock: FakeClock) -> AsyncIterator[InMemoryTransport]:
    async with InMemoryTransport(clock=clock) as transport:
        await transport.provision(TOPOLOGY)
        yield transport


def message(name: str, *, group: str | None = None, dedup: str | None = None) -> Outgoing:
    return Outgoing(name.encode(), name, group_key=group, deduplication_id=dedup)


def names(deliveries: Sequence[Delivery]) -> list[str]:
    return [delivery.body.decode() for delivery in deliveries]


async def receive_now(
    transport: InMemoryTransport, queue: str = QUEUE, **kwargs: float
) -> list[str]:
    """Receive without waiting and ack everything; return the bodies."""
    deliveries = await transport.receive(queue, wait=0, **kwargs)  # type: ignore[arg-type]
    for delivery in deliveries:
        await delivery.ack()
    return names(deliveries)


class TestConstruction:
    """What a transport is made of."""

    def test_is_a_transport_with_sqs_limits(self) -> None:
        """It satisfies the Transport protocol and declares SQS's limits."""
        transport = InMemoryTransport()
        assert isinstance(transport, Transport)
        assert transport.capabilities == MEMORY_CAPABILITIES
        assert MEMORY_CAPABILITIES.max_message_bytes == 1024 * 1024
        assert (MEMORY_CAPABILITIES.max_batch_size, MEMORY_CAPABILITIES.fifo_delay) == (10, False)

    def test_broker_and_clock_together_are_refused(self, clock: FakeClock) -> None:
        """A broker has its own clock, so giving both is a mistake."""
        with pytest.raises(ValueError, match="not both"):
            InMemoryTransport(MemoryBroker(clock=clock), clock=clock)

    async def test_transports_on_one_broker_share_queues(self, clock: FakeClock) -> None:
        """A message sent through one transport is received through another."""
        broker = MemoryBroker(clock=clock)
        async with InMemoryTransport(broker) as first, InMemoryTransport(broker) as second:
            await first.provision(TOPOLOGY)
            await first.send(QUEUE, [message("shared")])
            (delivery,) = await second.receive(QUEUE, wait=0)
            assert isinstance(delivery, Delivery)
            assert (delivery.queue, delivery.message_id) == (QUEUE, "shared")
            assert repr(delivery) == "<MemoryDelivery shared from 'orders', receive 1>"


class TestProvision:
    """Queues and topics exist once provisioned, and provisioning is idempotent."""

    async def test_unprovisioned_destinations_are_not_found(self) -> None:
        """Sending, publishing and receiving need a provisioned destination."""
        async with InMemoryTransport() as transport:
            with pytest.raises(DestinationNotFoundError, match="no queue 'orders'"):
                await transport.send(QUEUE, [message("m")])
            with pytest.raises(DestinationNotFoundError, match="no queue 'orders'"):
                await transport.receive(QUEUE, wait=0)
            with pytest.raises(DestinationNotFoundError, match="no topic 'order-events'"):
                await transport.publish(TOPIC, [message("m")])

    async def test_provisioning_again_keeps_messages(self, transport: InMemoryTransport) -> None:
        """A second provision of the same topology changes nothing."""
        await transport.send(QUEUE, [message("kept")])
        await transport.provision(TOPOLOGY)
        assert await receive_now(transport) == ["kept"]

    async def test_a_queue_with_max_receives_gets_a_dead_letter_queue(
        self, transport: InMemoryTransport
    ) -> None:
        """orders-dlq and ledger-dlq exist; audit, with no max_receives, has none."""
        assert (await transport.depth("orders-dlq")).total == 0
        assert (await transport.depth("ledger-dlq")).total == 0
        with pytest.raises(DestinationNotFoundError):
            await transport.depth("audit-dlq")

    async def test_changing_a_queue_is_refused(self, transport: InMemoryTransport) -> None:
        """A queue provisioned again with other settings raises ConfigurationError."""
        changed = Topology(queues=(QueueSpec(QUEUE, visibility_timeout=5.0),))
        with pytest.raises(ConfigurationError, match="cannot change"):
            await transport.provision(changed)

    async def test_changing_a_topic_is_refused(self, transport: InMemoryTransport) -> None:
        """A topic provisioned again as FIFO raises ConfigurationError."""
        with pytest.raises(ConfigurationError, match="topic 'order-events' exists"):
            await transport.provision(Topology(topics=(TopicSpec(TOPIC, fifo=True),)))

    @pytest.mark.parametrize(
        "subscription",
        [TopicSubscription("nowhere", "new-queue"), TopicSubscription("new-topic", "nowhere")],
    )
    async def test_a_refused_topology_changes_nothing(
        self, subscription: TopicSubscription
    ) -> None:
        """A subscription to an unknown queue or topic refuses the whole topology."""
        async with InMemoryTransport() as transport:
            topology = Topology(
                queues=(QueueSpec("new-queue"),),
                topics=(TopicSpec("new-topic"),),
                subscriptions=(subscription,),
            )
            with pytest.raises(DestinationNotFoundError, match="nowhere"):
                await transport.provision(topology)
            with pytest.raises(DestinationNotFoundError):
                await transport.depth("new-queue")

    @pytest.mark.parametrize("name", ["", "has space", "dotted.name", "x" * 81])
    async def test_invalid_names_are_refused(self, name: str) -> None:
        """Names are 1 to 80 letters, digits, '-' or '_'."""
        async with InMemoryTransport() as transport:
            with pytest.raises(ValueError, match="not a valid name"):
                await transport.provision(Topology(queues=(QueueSpec(name),)))


class TestTopics:
    """A topic copies each message to every subscribed queue."""

    async def test_publish_reaches_every_subscriber(self, transport: InMemoryTransport) -> None:
        """orders and audit each get a copy; ledger, not subscribed, gets none."""
        await transport.publish(TOPIC, [message("e1"), message("e2")])
        assert await receive_now(transport) == ["e1", "e2"]
        assert await receive_now(transport, "audit") == ["e1", "e2"]
        assert await receive_now(transport, FIFO) == []

    async def test_subscribing_twice_delivers_once(self, transport: InMemoryTransport) -> None:
        """A subscription provisioned again is still one subscription."""
        await transport.provision(Topology(subscriptions=(TopicSubscription(TOPIC, QUEUE),)))
        await transport.publish(TOPIC, [message("once")])
        assert await receive_now(transport) == ["once"]


class TestVisibility:
    """A received message is invisible for its visibility timeout, then due again."""

    async def test_unsettled_message_reappears_after_the_timeout(
        self, transport: InMemoryTransport, clock: FakeClock
    ) -> None:
        """Invisible for 30 s, then received again with receive_count 2."""
        await transport.send(QUEUE, [message("m")])
        (first,) = await transport.receive(QUEUE, wait=0)
        assert first.receive_count == 1
        clock.advance(29.9)
        assert await transport.receive(QUEUE, wait=0) == []
        assert await transport.depth(QUEUE) == QueueDepth(visible=0, in_flight=1, delayed=0)
        clock.advance(0.1)
        (second,) = await transport.receive(QUEUE, wait=0)
        assert (second.body, second.receive_count) == (b"m", 2)

    async def test_receive_overrides_the_timeout(
        self, transport: InMemoryTransport, clock: FakeClock
    ) -> None:
        """visibility_timeout=5 makes the message due after 5 s instead of 30."""
        await transport.send(QUEUE, [message("m")])
        await transport.receive(QUEUE, wait=0, visibility_timeout=5)
        clock.advance(5)
        assert await receive_now(transport) == ["m"]

    async def test_zero_visibility_hands_a_message_out_once_per_receive(
        self, transport: InMemoryTransport
    ) -> None:
        """With visibility 0 one receive still returns each message once."""
        await transport.send(QUEUE, [message("m")])
        first = await transport.receive(QUEUE, wait=0, visibility_timeout=0)
        assert names(first) == ["m"]
        assert names(await transport.receive(QUEUE, wait=0, visibility_timeout=0)) == ["m"]

    async def test_settling_after_the_timeout_is_expired(
        self, transport: InMemoryTransport, clock: FakeClock
    ) -> None:
        """ack, nack and extend raise DeliveryExpiredError once visibility has ended."""
        await transport.send(QUEUE, [message("m")])
        (delivery,) = await transport.receive(QUEUE, wait=0)
        clock.advance(30)
        with pytest.raises(DeliveryExpiredError, match="message m from queue 'orders'"):
            await delivery.ack()
        with pytest.raises(DeliveryExpiredError):
            await delivery.nack()
        with pytest.raises(DeliveryExpiredError):
            await delivery.extend(10)
        assert (await transport.depth(QUEUE)).visible == 1

    async def test_a_stale_delivery_cannot_ack_the_new_one(
        self, transport: InMemoryTransport, clock: FakeClock
    ) -> None:
        """After a re-receive only the latest delivery settles the message."""
        await transport.send(QUEUE, [message("m")])
        (stale,) = await transport.receive(QUEUE, wait=0)
        clock.advance(30)
        (fresh,) = await transport.receive(QUEUE, wait=0)
        with pytest.raises(DeliveryExpiredError):
            await stale.ack()
        await fresh.ack()
        assert (await transport.depth(QUEUE)).total == 0

    async def test_settling_twice_is_expired(self, transport: InMemoryTransport) -> None:
        """A delivery acked (or nacked) once cannot be settled again."""
        await transport.send(QUEUE, [message("a"), message("b")])
        acked, nacked = await transport.receive(QUEUE, wait=0)
        await acked.ack()
        await nacked.nack()
        with pytest.raises(DeliveryExpiredError):
            await acked.ack()
        with pytest.raises(DeliveryExpiredError):
            await nacked.ack()

    async def test_extend_moves_the_deadline(
        self, transport: InMemoryTransport, clock: FakeClock
    ) -> None:
        """extend(60) keeps the message invisible 60 s from now, and ack still works."""
        await transport.send(QUEUE, [message("m")])
        (delivery,) = await transport.receive(QUEUE, wait=0)
        clock.advance(20)
        await delivery.extend(60)
        clock.advance(59)
        assert await transport.receive(QUEUE, wait=0) == []
        await delivery.ack()
        clock.advance(10)
        assert (await transport.depth(QUEUE)).total == 0

    async def test_nack_redelivers_now_or_after_its_delay(
        self, transport: InMemoryTransport, clock: FakeClock
    ) -> None:
        """nack() makes the message due at once; nack(10) after 10 s."""
        await transport.send(QUEUE, [message("m")])
        (delivery,) = await transport.receive(QUEUE, wait=0)
        await delivery.nack()
        (delivery,) = await transport.receive(QUEUE, wait=0)
        assert delivery.receive_count == 2
        await delivery.nack(delay=10)
        assert await transport.depth(QUEUE) == QueueDepth(visible=0, in_flight=0, delayed=1)
        clock.advance(9.9)
        assert await transport.receive(QUEUE, wait=0) == []
        clock.advance(0.1)
        assert await receive_now(transport) == ["m"]


class TestDelay:
    """A message sent with a delay becomes visible after it."""

    async def test_delayed_message_waits(
        self, transport: InMemoryTransport, clock: FakeClock
    ) -> None:
        """Visible only after its 15 s, while undelayed ones pass it by."""
        await transport.send(QUEUE, [attrs.evolve(message("late"), delay=15), message("now")])
        assert await receive_now(transport) == ["now"]
        assert await transport.depth(QUEUE) == QueueDepth(visible=0, in_flight=0, delayed=1)
        clock.advance(15)
        assert await receive_now(transport) == ["late"]

    async def test_fifo_queues_take_no_delay(self, transport: InMemoryTransport) -> None:
        """Like SQS, a FIFO queue refuses a per-message delay, and stores nothing."""
        batch = [message("ok", group="g"), attrs.evolve(message("late", group="g"), delay=1)]
        with pytest.raises(ValueError, match="FIFO queue 'ledger' takes no per-message delay"):
            await transport.send(FIFO, batch)
        assert (await transport.depth(FIFO)).total == 0

    @pytest.mark.parametrize("delay", [-1.0, 901.0])
    async def test_delay_out_of_range_is_refused(
        self, transport: InMemoryTransport, delay: float
    ) -> None:
        """Delays run from 0 to 900 s."""
        with pytest.raises(ValueError, match="delay must be 0 to 900 seconds"):
            await transport.send(QUEUE, [attrs.evolve(message("m"), delay=delay)])


class TestDeadLetters:
    """After max_receives receives a message moves to the dead-letter queue."""

    async def test_exhausted_message_moves(self, transport: InMemoryTransport) -> None:
        """Received 3 times, then found in orders-dlq with receive_count 1, not in orders."""
        await transport.send(QUEUE, [message("poison")])
        for count in (1, 2, 3):
            (delivery,) = await transport.receive(QUEUE, wait=0)
            assert delivery.receive_count == count
            await delivery.nack()
        assert await transport.receive(QUEUE, wait=0) == []
        assert (await transport.depth(QUEUE)).total == 0
        (dead,) = await transport.receive("orders-dlq", wait=0)
        assert (dead.body, dead.queue, dead.receive_count) == (b"poison", "orders-dlq", 1)

    async def test_without_max_receives_a_message_stays(self, transport: InMemoryTransport) -> None:
        """A queue with max_receives=None redelivers forever."""
        await transport.send("audit", [message("m")])
        for _ in range(10):
            (delivery,) = await transport.receive("audit", wait=0)
            await delivery.nack()
        assert delivery.receive_count == 10

    async def test_fifo_dead_letter_unblocks_the_group(self, transport: InMemoryTransport) -> None:
        """A dead-lettered head lets the next message of its group through, in order."""
        await transport.send(FIFO, [message("a", group="g"), message("b", group="g")])
        for _ in range(2):
            (head,) = await transport.receive(FIFO, wait=0)
            assert head.body == b"a"
            await head.nack()
        assert await receive_now(transport, FIFO) == ["b"]
        assert await receive_now(transport, "ledger-dlq") == ["a"]


class TestFifo:
    """FIFO queues: one in-flight message per group, in order, deduplicated."""

    async def test_one_message_per_group_in_flight(
        self, transport: InMemoryTransport, clock: FakeClock
    ) -> None:
        """A group's next message waits for the previous one; other groups go on."""
        batch = [message(name, group=name[0]) for name in ("a1", "a2", "b1", "a3", "b2")]
        await transport.send(FIFO, batch)
        first = await transport.receive(FIFO, wait=0)
        assert names(first) == ["a1", "b1"]
        assert await transport.receive(FIFO, wait=0) == []
        await first[1].ack()
        assert await receive_now(transport, FIFO) == ["b2"]
        clock.advance(30)  # a1 times out: it, not a2, comes again
        (again,) = await transport.receive(FIFO, wait=0, visibility_timeout=30)
        assert (again.body, again.receive_count) == (b"a1", 2)
        await again.ack()
        assert await receive_now(transport, FIFO) == ["a2"]
        assert await receive_now(transport, FIFO) == ["a3"]

    async def test_no_group_key_is_the_default_group(self, transport: InMemoryTransport) -> None:
        """Messages without a group_key share one group."""
        await transport.send(FIFO, [message("x"), message("y")])
        assert await receive_now(transport, FIFO) == ["x"]
        assert await receive_now(transport, FIFO) == ["y"]

    async def test_duplicates_are_dropped_within_the_window(
        self, transport: InMemoryTransport, clock: FakeClock
    ) -> None:
        """The same deduplication id (or message id) within 5 min is stored once."""
        await transport.send(FIFO, [message("a", dedup="k"), message("b", dedup="k")])
        await transport.send(FIFO, [message("c"), message("c")])
        clock.advance(299)
        await transport.send(FIFO, [message("d", dedup="k")])
        assert await receive_now(transport, FIFO, max_messages=1) == ["a"]
        assert await receive_now(transport, FIFO) == ["c"]
        assert await receive_now(transport, FIFO) == []
        clock.advance(1)
        await transport.send(FIFO, [message("e", dedup="k")])
        assert await receive_now(transport, FIFO) == ["e"]

    async def test_standard_queues_do_not_deduplicate(self, transport: InMemoryTransport) -> None:
        """A standard queue stores every message sent."""
        await transport.send(QUEUE, [message("a", dedup="k"), message("a", dedup="k")])
        assert await receive_now(transport) == ["a", "a"]


class TestLimits:
    """Sizes and times out of range are refused before anything is stored."""

    async def test_too_large_stores_nothing(self, transport: InMemoryTransport) -> None:
        """One body over 1 MiB refuses the whole send or publish."""
        big = Outgoing(b"x" * (1024 * 1024 + 1), "big")
        for call in (transport.send(QUEUE, [message("ok"), big]), transport.publish(TOPIC, [big])):
            with pytest.raises(MessageTooLargeError) as raised:
                await call
            assert (raised.value.message_id, raised.value.size) == ("big", 1024 * 1024 + 1)
        assert (await transport.depth(QUEUE)).total == 0
        assert (await transport.depth("audit")).total == 0

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"max_messages": 0}, "max_messages must be 1 to 10"),
            ({"max_messages": 11}, "max_messages must be 1 to 10"),
            ({"wait": -1}, "wait must not be negative"),
            ({"visibility_timeout": 43_201}, "visibility_timeout must be 0 to 43200"),
        ],
    )
    async def test_receive_arguments_are_checked(
        self, transport: InMemoryTransport, kwargs: dict[str, float], error: str
    ) -> None:
        """Out-of-range receive arguments raise ValueError."""
        with pytest.raises(ValueError, match=error):
            await transport.receive(QUEUE, **kwargs)  # type: ignore[arg-type]

    async def test_settle_arguments_are_checked(self, transport: InMemoryTransport) -> None:
        """nack and extend take 0 to 12 h."""
        await transport.send(QUEUE, [message("m")])
        (delivery,) = await transport.receive(QUEUE, wait=0)
        with pytest.raises(ValueError, match="delay must be 0 to 43200"):
            await delivery.nack(delay=-1)
        with pytest.raises(ValueError, match="visibility must be 0 to 43200"):
            await delivery.extend(43_201)


class TestLongPoll:
    """A waiting receive returns as soon as a message is there, and can be cancelled."""

    async def test_a_send_wakes_a_waiting_receive(self) -> None:
        """A receive waiting 60 s returns the message sent while it waits."""
        broker = MemoryBroker()
        async with InMemoryTransport(broker) as consumer, InMemoryTransport(broker) as producer:
            await consumer.provision(TOPOLOGY)
            got: list[str] = []

            async def receive() -> None:
                got.extend(names(await consumer.receive(QUEUE, wait=60)))

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(receive)
                    await anyio.wait_all_tasks_blocked()
                    await producer.send(QUEUE, [message("wake")])
            assert got == ["wake"]

    async def test_a_delayed_message_wakes_a_waiting_receive(self) -> None:
        """With no send to wake it, a receive returns a delayed message once it is due."""
        async with InMemoryTransport() as transport:
            await transport.provision(TOPOLOGY)
            await transport.send(QUEUE, [attrs.evolve(message("due"), delay=0.05)])
            with anyio.fail_after(5):
                assert names(await transport.receive(QUEUE, wait=60)) == ["due"]

    async def test_wait_passes_with_nothing(self) -> None:
        """With nothing to receive, a receive returns an empty list after its wait."""
        async with InMemoryTransport() as transport:
            await transport.provision(TOPOLOGY)
            with anyio.fail_after(5):
                assert await transport.receive(QUEUE, wait=0.01) == []

    async def test_a_cancelled_receive_loses_nothing(self, transport: InMemoryTransport) -> None:
        """Cancelling a waiting receive, or one cancelled before it starts, takes nothing."""
        with anyio.move_on_after(0.01):
            await transport.receive(QUEUE, wait=60)
        await transport.send(QUEUE, [message("m")])
        with anyio.CancelScope() as scope:
            scope.cancel()
            await transport.receive(QUEUE, wait=60)
        assert await transport.depth(QUEUE) == QueueDepth(visible=1, in_flight=0, delayed=0)
        assert await receive_now(transport) == ["m"]


class TestClose:
    """A closed transport refuses calls; its unsettled messages stay in the broker."""

    async def test_close_ends_waiting_receives(self) -> None:
        """A receive waiting when the transport closes raises TransportUnavailableError."""
        transport = InMemoryTransport()
        errors: list[Exception] = []

        async def receive() -> None:
            try:
                await transport.receive(QUEUE, wait=60)
            except TransportUnavailableError as error:
                errors.append(error)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                await transport.__aenter__()
                await transport.provision(TOPOLOGY)
                tasks.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                await transport.__aexit__(None, None, None)
        assert len(errors) == 1

    async def test_calls_after_close_are_refused(self, clock: FakeClock) -> None:
        """Sending, settling and entering again after close raise; the message stays."""
        broker = MemoryBroker(clock=clock)
        async with InMemoryTransport(broker) as transport:
            await transport.provision(TOPOLOGY)
            await transport.send(QUEUE, [message("m")])
            (delivery,) = await transport.receive(QUEUE, wait=0)
        with pytest.raises(TransportUnavailableError, match="closed"):
            await transport.send(QUEUE, [message("n")])
        with pytest.raises(TransportUnavailableError, match="closed"):
            await delivery.ack()
        with pytest.raises(TransportUnavailableError, match="make a new one"):
            await transport.__aenter__()
        clock.advance(30)
        async with InMemoryTransport(broker) as restarted:
            assert await receive_now(restarted) == ["m"]
