"""The transport conformance suite: one coroutine per property every transport keeps.

Each ``check_*`` takes a :class:`TransportHarness`, opens transports with it, provisions
queues and topics under fresh names, and raises :class:`AssertionError` saying what went
wrong, or :class:`NotApplicable` when the transport's capabilities rule the property
out. Nothing here imports a test framework: run them from pytest (parametrize a test over
:data:`TRANSPORT_CHECKS`), from another runner, or all at once with
:func:`check_transport`.

Timing checks wait by polling with deadlines (``harness.patience``), never by sleeping a
fixed time, and ask only that delays be honoured approximately (at least half of the
delay asked), so a server whose timers tick once a second passes. What must *not* arrive
is checked by receiving for ``harness.short`` seconds.

Topics are declared with the wire types they carry (:attr:`TopicSpec.message_types`),
each topic its own, so that a transport routing by type (EventBridge,
:attr:`~messagebus.transports.Capabilities.routes_by_type`) is checked by the same code.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

import anyio

from messagebus._envelope import Envelope
from messagebus._errors import DestinationNotFoundError, MessageTooLargeError
from messagebus._messages import Message
from messagebus.testing._harness import (
    CODEC,
    NotApplicable,
    OtherProbe,
    Probe,
    TransportHarness,
    absent,
    gather,
    outgoing,
    probe,
    text_of,
)
from messagebus.transports._protocol import (
    Delivery,
    Outgoing,
    QueueSpec,
    TopicSpec,
    TopicSubscription,
    Topology,
    Transport,
)

__all__ = [
    "TRANSPORT_CHECKS",
    "TransportCheck",
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

TransportCheck = Callable[[TransportHarness], Awaitable[None]]
"""One conformance check."""

_PROBES = (Probe.__message_name__,)
_OTHER_PROBES = (OtherProbe.__message_name__,)

_LONG = 60.0  # a visibility timeout no check waits out


def _queues(
    *names: str,
    fifo: bool = False,
    visibility_timeout: float = 30.0,
    max_receives: int | None = 5,
) -> Topology:
    return Topology(
        queues=tuple(
            QueueSpec(
                name, fifo=fifo, visibility_timeout=visibility_timeout, max_receives=max_receives
            )
            for name in names
        )
    )


async def check_round_trip(harness: TransportHarness) -> None:
    """Check that a message arrives with its body byte for byte and every envelope field intact."""
    queue, topic = harness.name("trip"), harness.name("trip-topic")
    root = probe(
        'héllo ✓ "quoted" \\ \n',
        42,
        headers={"tenant": "t-1", "trace": "00-abc-01"},
        idempotency_key="key-1",
        attempt=3,
    )
    sent = {e.message_id: (e, outgoing(e)) for e in (root, probe("follow-up", 7, parent=root))}
    async with harness.open() as transport:
        fan_out = transport.capabilities.fan_out
        topology = Topology(
            queues=(QueueSpec(queue, visibility_timeout=_LONG),),
            topics=(TopicSpec(topic, message_types=_PROBES),) if fan_out else (),
            subscriptions=(TopicSubscription(topic, queue),) if fan_out else (),
        )
        await transport.provision(topology)
        await transport.send(queue, [message for _, message in sent.values()])
        routes = [sent]
        if fan_out:
            published = probe("published", 9, headers={"h": "v"})
            await transport.publish(topic, [outgoing(published)])
            routes.append({published.message_id: (published, outgoing(published))})
        for expected in routes:
            for delivery in await gather(transport, queue, len(expected), harness):
                envelope = CODEC.decode(delivery.body)
                assert envelope.message_id in expected, f"unexpected message {envelope!r}"
                original, message = expected[envelope.message_id]
                assert delivery.body == message.body, "the body changed on the way"
                assert envelope == original, f"sent {original!r}, received {envelope!r}"
                assert delivery.queue == queue, f"delivery.queue is {delivery.queue!r}"
                assert delivery.receive_count == 1, f"receive_count {delivery.receive_count}"


async def check_many_producers_and_consumers(harness: TransportHarness) -> None:
    """``harness.messages`` messages, many producers and consumers: none lost or made up.

    A message may come twice only as a redelivery (one of its deliveries then has a
    ``receive_count`` above 1).
    """
    queue, total = harness.name("many"), harness.messages
    envelopes = [probe(f"m{i}", i) for i in range(total)]
    expected = {envelope.message_id for envelope in envelopes}
    counts: defaultdict[str, list[int]] = defaultdict(list)
    done = anyio.Event()

    async with harness.open() as transport:
        await transport.provision(_queues(queue, visibility_timeout=_LONG))
        batch = transport.capabilities.max_batch_size
        slices = [envelopes[i :: harness.concurrency] for i in range(harness.concurrency)]

        async def produce(mine: list[Envelope[Message]]) -> None:
            for start in range(0, len(mine), batch):
                await transport.send(queue, [outgoing(e) for e in mine[start : start + batch]])

        async def consume() -> None:
            while True:
                for delivery in await transport.receive(queue, wait=min(harness.patience, 20)):
                    counts[CODEC.decode(delivery.body).message_id].append(delivery.receive_count)
                    await delivery.ack()
                if expected <= counts.keys():
                    done.set()

        with anyio.move_on_after(harness.patience) as scope:
            async with anyio.create_task_group() as consumers:
                for _ in range(harness.concurrency):
                    consumers.start_soon(consume)
                async with anyio.create_task_group() as producers:
                    for mine in slices:
                        producers.start_soon(produce, mine)
                await done.wait()
                consumers.cancel_scope.cancel()
    missing = expected - counts.keys()
    if scope.cancelled_caught:
        raise AssertionError(
            f"{total - len(missing)} of {total} messages arrived within "
            f"{harness.patience:g} s; {len(missing)} missing"
        )
    extra = counts.keys() - expected
    assert not extra, f"{len(extra)} messages arrived that nobody sent"
    for message_id, receive_counts in counts.items():
        if len(receive_counts) > 1:
            assert max(receive_counts) > 1, (
                f"message {message_id} arrived {len(receive_counts)} times, each with "
                "receive_count 1: a duplicate that is not a redelivery"
            )


async def check_queue_isolation(harness: TransportHarness) -> None:
    """Check that a message sent to one queue arrives there and on no other queue."""
    first, second = harness.name("iso-a"), harness.name("iso-b")
    async with harness.open() as transport:
        await transport.provision(_queues(first, second))
        for target, other in ((first, second), (second, first)):
            envelope = probe(f"for {target}")
            await transport.send(target, [outgoing(envelope)])
            (delivery,) = await gather(transport, target, 1, harness)
            assert text_of(delivery) == f"for {target}", "another message arrived"
            await absent(transport, [other], harness)


async def check_topic_fan_out(harness: TransportHarness) -> None:
    """Check that a topic copies each message to every queue subscribed to it, and to no other."""
    topics = [harness.name("fan-t1"), harness.name("fan-t2")]
    queues = [harness.name(f"fan-q{i}") for i in range(4)]
    subscribed = {topics[0]: queues[:2], topics[1]: queues[2:3]}  # queues[3]: no topic
    kinds: dict[str, type[Probe | OtherProbe]] = {topics[0]: Probe, topics[1]: OtherProbe}
    async with harness.open() as transport:
        if not transport.capabilities.fan_out:
            raise NotApplicable("the transport has no topic fan-out")
        await transport.provision(
            Topology(
                queues=tuple(QueueSpec(name) for name in queues),
                topics=(
                    TopicSpec(topics[0], message_types=_PROBES),
                    TopicSpec(topics[1], message_types=_OTHER_PROBES),
                ),
                subscriptions=tuple(
                    TopicSubscription(topic, queue)
                    for topic, qs in subscribed.items()
                    for queue in qs
                ),
            )
        )
        for topic, targets in subscribed.items():
            await transport.publish(topic, [outgoing(probe(f"on {topic}", kind=kinds[topic]))])
            for queue in targets:
                (delivery,) = await gather(transport, queue, 1, harness)
                assert text_of(delivery) == f"on {topic}", f"{queue!r} got another message"
            await absent(transport, [q for q in queues if q not in targets], harness)


async def check_nack_redelivers(harness: TransportHarness) -> None:
    """Check that a nacked message comes back, at once or after the delay asked (approximately)."""
    queue = harness.name("nack")
    async with harness.open() as transport:
        await transport.provision(_queues(queue, visibility_timeout=_LONG, max_receives=None))
        await transport.send(queue, [outgoing(probe("nacked"))])
        (first,) = await gather(transport, queue, 1, harness, ack=False)
        await first.nack()
        (second,) = await gather(transport, queue, 1, harness, ack=False)
        assert second.receive_count == 2, f"redelivered with receive_count {second.receive_count}"
        assert second.body == first.body, "the redelivered body differs"
        started = anyio.current_time()
        await second.nack(delay=harness.short)
        (third,) = await gather(transport, queue, 1, harness)
        waited = anyio.current_time() - started
        assert waited >= harness.short / 2, (
            f"nack(delay={harness.short:g}) made the message visible after {waited:.3f} s"
        )
        assert third.receive_count == 3, f"receive_count {third.receive_count}, want 3"
        await absent(transport, [queue], harness)


async def check_visibility_timeout(harness: TransportHarness) -> None:
    """Check that a message neither acked nor nacked reappears after its visibility timeout."""
    queue = harness.name("vis")
    async with harness.open() as transport:
        await transport.provision(_queues(queue, visibility_timeout=_LONG))
        await transport.send(queue, [outgoing(probe("forgotten"))])
        started = anyio.current_time()
        await gather(transport, queue, 1, harness, visibility_timeout=harness.short, ack=False)
        (again,) = await gather(transport, queue, 1, harness)
        waited = anyio.current_time() - started
        assert again.receive_count == 2, f"reappeared with receive_count {again.receive_count}"
        assert waited >= harness.short / 2, (
            f"a visibility timeout of {harness.short:g} s ended after {waited:.3f} s"
        )
        await absent(transport, [queue], harness)


async def check_extend(harness: TransportHarness) -> None:
    """Check that extend() keeps a delivery from other receivers, and ack still works."""
    queue = harness.name("extend")
    async with harness.open() as transport:
        await transport.provision(_queues(queue, visibility_timeout=_LONG))
        await transport.send(queue, [outgoing(probe("kept"))])
        (delivery,) = await gather(
            transport, queue, 1, harness, visibility_timeout=harness.short, ack=False
        )
        await delivery.extend(harness.short * 4)
        # Receiving for two visibility timeouts of the original receive: it must not show.
        await absent(transport, [queue, queue], harness)
        await delivery.ack()
        await absent(transport, [queue], harness)


async def check_delay(harness: TransportHarness) -> None:
    """Check that a message sent with a delay arrives after it (approximately), not before."""
    queue = harness.name("delay")
    async with harness.open() as transport:
        await transport.provision(_queues(queue))
        started = anyio.current_time()
        await transport.send(queue, [outgoing(probe("later"), delay=harness.short)])
        await gather(transport, queue, 1, harness)
        waited = anyio.current_time() - started
        assert waited >= harness.short / 2, (
            f"a message delayed {harness.short:g} s arrived after {waited:.3f} s"
        )


async def check_dead_letter(harness: TransportHarness) -> None:
    """Check that after ``max_receives`` receives a message moves to the dead-letter queue."""
    spec = QueueSpec(harness.name("dlq"), visibility_timeout=_LONG, max_receives=2)
    async with harness.open() as transport:
        await transport.provision(Topology(queues=(spec,)))
        await transport.send(spec.name, [outgoing(probe("poison"))])
        for _ in range(2):
            (delivery,) = await gather(transport, spec.name, 1, harness, ack=False)
            await delivery.nack()
        deadline = anyio.current_time() + harness.patience
        while anyio.current_time() < deadline:
            # SQS moves a message when a receive finds it exhausted: keep receiving.
            again = await transport.receive(spec.name, wait=harness.short)
            assert not again, f"received {again[0].receive_count} times although max_receives is 2"
            dead = await transport.receive(spec.dead_letter_queue, wait=harness.short)
            if dead:
                assert text_of(dead[0]) == "poison", "another message in the dead-letter queue"
                await dead[0].ack()
                return
        raise AssertionError(
            f"the message was not in {spec.dead_letter_queue!r} within {harness.patience:g} s"
        )


def _fifo(transport: Transport) -> None:
    if not transport.capabilities.ordered_groups:
        raise NotApplicable("the transport has no FIFO queues (ordered_groups is False)")


async def check_group_order(harness: TransportHarness) -> None:
    """Check that FIFO groups arrive in send order, one message in flight at a time."""
    queue, blocked = harness.name("order"), harness.name("order-1")
    groups, per_group = 5, 20
    async with harness.open() as transport:
        _fifo(transport)
        await transport.provision(_queues(queue, blocked, fifo=True, visibility_timeout=_LONG))
        envelopes = [
            probe(f"g{group}:{i}", i, group_key=f"g{group}")
            for i in range(per_group)
            for group in range(groups)
        ]
        batch = transport.capabilities.max_batch_size
        for start in range(0, len(envelopes), batch):
            await transport.send(queue, [outgoing(e) for e in envelopes[start : start + batch]])
        seen: defaultdict[str, list[int]] = defaultdict(list)
        done = anyio.Event()

        async def consume() -> None:
            while True:
                for delivery in await transport.receive(queue, wait=min(harness.patience, 20)):
                    group, number = text_of(delivery).split(":")
                    seen[group].append(int(number))
                    await delivery.ack()
                if sum(map(len, seen.values())) >= len(envelopes):
                    done.set()

        with anyio.move_on_after(harness.patience) as scope:
            async with anyio.create_task_group() as consumers:
                for _ in range(harness.concurrency):
                    consumers.start_soon(consume)
                await done.wait()
                consumers.cancel_scope.cancel()
        for group, numbers in seen.items():
            assert numbers == sorted(numbers), f"group {group} arrived as {numbers}"
        if scope.cancelled_caught:
            raise AssertionError(
                f"{sum(map(len, seen.values()))} of {len(envelopes)} FIFO messages arrived "
                f"within {harness.patience:g} s"
            )
        assert all(n == list(range(per_group)) for n in seen.values()), f"got {dict(seen)}"

        first, second = probe("first", group_key="g"), probe("second", group_key="g")
        await transport.send(blocked, [outgoing(first), outgoing(second)])
        (head,) = await transport.receive(blocked, max_messages=1, wait=harness.patience)
        assert text_of(head) == "first", f"{text_of(head)!r} came before 'first'"
        await absent(transport, [blocked], harness)
        await head.ack()
        (after,) = await gather(transport, blocked, 1, harness)
        assert text_of(after) == "second", f"{text_of(after)!r} came after 'first'"


async def check_fifo_deduplication(harness: TransportHarness) -> None:
    """Check that a FIFO queue drops a resend with the same deduplication id (or message id)."""
    queue = harness.name("dedup")
    async with harness.open() as transport:
        _fifo(transport)
        await transport.provision(_queues(queue, fifo=True))
        keyed = probe("keyed", idempotency_key="pay-1", group_key="g")
        same_key = probe("same key", idempotency_key="pay-1", group_key="g")
        plain = probe("plain", group_key="g")
        await transport.send(queue, [outgoing(keyed), outgoing(same_key)])
        await transport.send(queue, [outgoing(plain)])
        await transport.send(queue, [outgoing(plain)])
        texts = [text_of(delivery) for delivery in await gather(transport, queue, 2, harness)]
        assert texts == ["keyed", "plain"], f"received {texts}"
        await absent(transport, [queue], harness)


async def check_close_loses_nothing(harness: TransportHarness) -> None:
    """Check that receivers cancelled mid-wait, deliveries left unsettled, a close: nothing is lost.

    The unsettled messages come back after their visibility timeout, to a new transport.
    """
    queue, count = harness.name("close"), 20
    held: list[Delivery] = []
    texts = [f"c{i}" for i in range(count)]
    sent = [probe(text) for text in texts]
    async with harness.open() as transport:
        await transport.provision(_queues(queue, visibility_timeout=_LONG))
        await transport.send(queue, [outgoing(e) for e in sent[:10]])
        await transport.send(queue, [outgoing(e) for e in sent[10:]])
        all_held = anyio.Event()

        async def consume() -> None:
            while True:
                batch = await transport.receive(
                    queue, wait=harness.patience, visibility_timeout=harness.short
                )
                held.extend(batch)
                if len({text_of(d) for d in held}) == count:
                    all_held.set()

        with anyio.move_on_after(harness.patience) as scope:
            async with anyio.create_task_group() as consumers:
                for _ in range(3):
                    consumers.start_soon(consume)
                await all_held.wait()
                consumers.cancel_scope.cancel()  # the other receivers are waiting now
        assert not scope.cancelled_caught, f"only {len(held)} of {count} arrived at first"
    late = [f"late{i}" for i in range(5)]
    async with harness.open() as transport:
        await transport.send(queue, [outgoing(probe(text)) for text in late])
        got = Counter(text_of(d) for d in await gather(transport, queue, count + 5, harness))
        want = Counter(texts + late)
        assert got == want, f"after the close got {sorted(got)}, want {sorted(want)}"


async def check_restart_continues(harness: TransportHarness) -> None:
    """Check that a new transport on the same backend continues where the old one stopped."""
    queue = harness.name("restart")
    sent = [probe(f"r{i}", i) for i in range(10)]
    async with harness.open() as transport:
        await transport.provision(_queues(queue, visibility_timeout=_LONG))
        await transport.send(queue, [outgoing(e) for e in sent])
        acked = {text_of(d) for d in await gather(transport, queue, 5, harness)}
    async with harness.open() as transport:
        await transport.send(queue, [outgoing(probe("after"))])
        rest = {text_of(d) for d in await gather(transport, queue, 6, harness)}
        want = {f"r{i}" for i in range(10)} - acked | {"after"}
        assert rest == want, f"after the restart got {sorted(rest)}, want {sorted(want)}"
        await absent(transport, [queue], harness)


async def check_provision_is_idempotent(harness: TransportHarness) -> None:
    """Check that provisioning again changes nothing and keeps the messages waiting."""
    queue = harness.name("again")
    async with harness.open() as transport:
        topology = _queues(queue)
        await transport.provision(topology)
        await transport.send(queue, [outgoing(probe("kept"))])
        await transport.provision(topology)
        (delivery,) = await gather(transport, queue, 1, harness)
        assert text_of(delivery) == "kept", "provision lost the waiting message"


def _at_size(text: str, size: int) -> Outgoing:
    base = len(outgoing(probe(text)).body)
    assert size >= base, f"limit {size} is below an empty probe's {base} bytes"
    return outgoing(probe(text + "x" * (size - base)))


async def check_size_limit(harness: TransportHarness) -> None:
    """Check that a body at the limit goes through; one byte more is refused and nothing is sent."""
    queue, topic = harness.name("size"), harness.name("size-t")
    async with harness.open() as transport:
        capabilities = transport.capabilities
        limit = capabilities.max_message_bytes
        fan_out = capabilities.fan_out
        await transport.provision(
            Topology(
                queues=(QueueSpec(queue),),
                topics=(TopicSpec(topic, message_types=_PROBES),) if fan_out else (),
                subscriptions=(TopicSubscription(topic, queue),) if fan_out else (),
            )
        )
        fits, too_big = _at_size("fits", limit), _at_size("too big", limit + 1)
        await transport.send(queue, [fits])
        (delivery,) = await gather(transport, queue, 1, harness)
        assert delivery.body == fits.body, "the largest body allowed changed on the way"
        sends: list[Callable[[list[Outgoing]], Awaitable[None]]] = [
            lambda batch: transport.send(queue, batch)
        ]
        if fan_out:
            sends.append(lambda batch: transport.publish(topic, batch))
        for send in sends:
            small = outgoing(probe("small"))
            try:
                await send([small, too_big])
            except MessageTooLargeError as error:
                got = (error.message_id, error.size, error.limit)
                want = (too_big.message_id, limit + 1, limit)
                assert got == want, f"MessageTooLargeError says {got}, want {want}"
            else:
                raise AssertionError(f"a {limit + 1}-byte body was accepted; limit {limit}")
            await absent(transport, [queue], harness)


async def check_destination_not_found(harness: TransportHarness) -> None:
    """Check that sending, publishing or receiving where nothing was provisioned fails.

    Publishing is not checked on a transport that routes by type: it has no topics.
    """
    nowhere = harness.name("nowhere")
    async with harness.open() as transport:
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("send", lambda: transport.send(nowhere, [outgoing(probe("lost"))])),
            ("receive", lambda: transport.receive(nowhere, wait=0)),
        ]
        if transport.capabilities.fan_out and not transport.capabilities.routes_by_type:
            calls.append(("publish", lambda: transport.publish(nowhere, [outgoing(probe("x"))])))
        for what, call in calls:
            try:
                await call()
            except DestinationNotFoundError:
                continue
            raise AssertionError(f"{what} to {nowhere!r} did not raise DestinationNotFoundError")


TRANSPORT_CHECKS: tuple[TransportCheck, ...] = (
    check_round_trip,
    check_many_producers_and_consumers,
    check_queue_isolation,
    check_topic_fan_out,
    check_nack_redelivers,
    check_visibility_timeout,
    check_extend,
    check_delay,
    check_dead_letter,
    check_group_order,
    check_fifo_deduplication,
    check_close_loses_nothing,
    check_restart_continues,
    check_provision_is_idempotent,
    check_size_limit,
    check_destination_not_found,
)
"""Every check, the basics first."""


async def check_transport(harness: TransportHarness) -> list[str]:
    """Run every check in :data:`TRANSPORT_CHECKS`; return the names of those not applicable.

    Raises:
        AssertionError: the first check that failed, its name first in the message.
    """
    skipped: list[str] = []
    for check in TRANSPORT_CHECKS:
        try:
            await check(harness)
        except NotApplicable:
            skipped.append(check.__name__)
        except AssertionError as error:
            raise AssertionError(f"{check.__name__}: {error}") from error
    return skipped
