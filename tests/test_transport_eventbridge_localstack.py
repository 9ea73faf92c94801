"""The EventBridge transport against LocalStack: PutEvents -> rule -> SQS -> receive.

asyncio only (aiobotocore). LocalStack delivers to SQS asynchronously, so the tests poll
with a deadline. Its gaps (an unknown bus silently accepted, order scrambled within a
call, 256 KB entries) are tested on the in-memory double instead
(tests/test_transport_eventbridge.py). Each test has its own prefix and bus.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiobotocore.session import get_session

from messagebus import MessageBus, SendError
from messagebus.transports import (
    Outgoing,
    QueueSpec,
    TopicSpec,
    TopicSubscription,
    Topology,
    transport_from_url,
)
from messagebus.transports.eventbridge import EventBridgeTransport
from tests.messages import PostPublished
from tests.test_transport_bus import working
from tests.test_transport_sqs import REGION, sqs_transport

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

PUBLISHED = "blog.post.published"


def client(name: str, endpoint: str) -> Any:
    session: Any = get_session()  # the client's type follows a literal name; any will do
    return session.create_client(
        name,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
async def events(localstack_endpoint: str) -> AsyncIterator[Any]:
    async with client("events", localstack_endpoint) as made:
        yield made


@pytest.fixture
async def sqs(localstack_endpoint: str) -> AsyncIterator[Any]:
    async with client("sqs", localstack_endpoint) as made:
        yield made


def on_localstack(endpoint: str, events: Any, prefix: str) -> EventBridgeTransport:
    return EventBridgeTransport(
        sqs_transport(endpoint, prefix=prefix),
        events,
        bus=f"{prefix}bus",
        prefix=prefix,
        retry_delay=0,
    )


def envelope(n: int, wire_type: str = PUBLISHED) -> Outgoing:
    body = {"specversion": "1.0", "id": f"m{n}", "type": wire_type, "source": "blog"}
    return Outgoing(json.dumps(body).encode(), f"m{n}")


async def received_ids(transport: EventBridgeTransport, queue: str, count: int) -> list[str]:
    """Poll ``queue`` until ``count`` deliveries came (acked), at most 15 s."""
    ids: list[str] = []
    with anyio.fail_after(15):
        while len(ids) < count:
            for delivery in await transport.receive(queue, wait=1):
                ids.append(json.loads(delivery.body)["id"])
                await delivery.ack()
    return sorted(ids)


async def test_publish_reaches_subscribed_queues_only(
    localstack_endpoint: str, events: Any
) -> None:
    """A rule per queue on detail-type; 12 events in two calls; envelopes unwrapped."""
    prefix = f"e{secrets.token_hex(4)}-"
    async with on_localstack(localstack_endpoint, events, prefix) as transport:
        await transport.provision(
            Topology(
                queues=(QueueSpec("a"), QueueSpec("b")),
                topics=(
                    TopicSpec("p", message_types=(PUBLISHED,)),
                    TopicSpec("d", message_types=("blog.post.deleted",)),
                ),
                subscriptions=(TopicSubscription("p", "a"), TopicSubscription("d", "b")),
            )
        )
        await transport.publish("p", [envelope(n) for n in range(12)])
        await transport.publish("d", [envelope(99, "blog.post.deleted")])
        assert await received_ids(transport, "a", 12) == sorted(f"m{n}" for n in range(12))
        assert await received_ids(transport, "b", 1) == ["m99"]
        assert await transport.receive("a", wait=0) == []


async def test_a_malformed_entry_is_a_send_error(localstack_endpoint: str, events: Any) -> None:
    """A per-entry refusal in a 200 reply surfaces as SendError naming the message."""
    prefix = f"e{secrets.token_hex(4)}-"
    async with on_localstack(localstack_endpoint, events, prefix) as transport:
        await transport.provision(Topology(queues=(QueueSpec("a"),)))
        transport.bus = "default"
        bad = Outgoing(b'{"type": "", "source": "blog", "id": "m1"}', "m1")
        with pytest.raises(SendError) as caught:
            await transport.publish("p", [bad, envelope(2)])
        assert [message_id for message_id, _ in caught.value.failed] == ["m1"]


async def test_the_blog_event_crosses_to_another_service(
    localstack_endpoint: str, events: Any
) -> None:
    """Bus to bus through EventBridge and SQS, with a worker, as in production."""
    prefix = f"e{secrets.token_hex(4)}-"
    seen: list[PostPublished] = []
    arrived = anyio.Event()
    blog = MessageBus(transport=on_localstack(localstack_endpoint, events, prefix), service="blog")
    notifier = MessageBus(
        transport=on_localstack(localstack_endpoint, events, prefix), service="notifier"
    )

    @notifier.subscriber(PostPublished)
    async def notify(event: PostPublished) -> None:
        seen.append(event)
        arrived.set()

    async with blog, notifier:
        await blog.provision()
        await notifier.provision()
        await blog.publish(PostPublished(1, "Hello"))
        async with working(notifier):
            with anyio.fail_after(15):
                await arrived.wait()
    assert seen == [PostPublished(1, "Hello")]


async def test_the_url_names_the_same_setup(
    localstack_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eventbridge://REGION?bus=...&endpoint_url=...: configuration only, no client code."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    prefix = f"e{secrets.token_hex(4)}-"
    url = (
        f"eventbridge://{REGION}?bus={prefix}bus&prefix={prefix}&endpoint_url={localstack_endpoint}"
    )
    transport = transport_from_url(url)
    async with transport:
        await transport.provision(
            Topology(
                queues=(QueueSpec("a"),),
                topics=(TopicSpec("p", message_types=(PUBLISHED,)),),
                subscriptions=(TopicSubscription("p", "a"),),
            )
        )
        await transport.publish("p", [envelope(1)])
        assert isinstance(transport, EventBridgeTransport)
        assert await received_ids(transport, "a", 1) == ["m1"]


async def test_provisioning_lets_each_rule_send_to_its_queue(
    localstack_endpoint: str, events: Any, sqs: Any
) -> None:
    """The queue policy allows events.amazonaws.com for the rule's ARN, once; FIFO too.

    LocalStack delivers without checking the policy (AWS drops what the policy does not
    allow): so the policy itself is read back here, and the FIFO queue's target and its
    content-based deduplication, which AWS requires of a FIFO target, are checked too.
    """
    prefix = f"e{secrets.token_hex(4)}-"
    topology = Topology(
        queues=(QueueSpec("a"), QueueSpec("f", fifo=True)),
        topics=(TopicSpec("p", message_types=(PUBLISHED,)),),
        subscriptions=(TopicSubscription("p", "a"), TopicSubscription("p", "f")),
    )
    async with on_localstack(localstack_endpoint, events, prefix) as transport:
        await transport.provision(topology)
        await transport.provision(topology)  # the statements are not added twice
        for queue, name in (("a", f"{prefix}a"), ("f", f"{prefix}f.fifo")):
            rule = await events.describe_rule(
                Name=f"{prefix}{queue}-events", EventBusName=f"{prefix}bus"
            )
            url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
            attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))[
                "Attributes"
            ]
            (statement,) = json.loads(attributes["Policy"])["Statement"]
            assert statement["Principal"] == {"Service": "events.amazonaws.com"}
            assert statement["Action"] == "sqs:SendMessage"
            assert statement["Resource"] == attributes["QueueArn"]
            assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule["Arn"]}}
            (target,) = (
                await events.list_targets_by_rule(
                    Rule=f"{prefix}{queue}-events", EventBusName=f"{prefix}bus"
                )
            )["Targets"]
            assert target["Arn"] == attributes["QueueArn"]
            if queue == "f":
                assert target["SqsParameters"] == {"MessageGroupId": "f"}
                assert attributes["ContentBasedDeduplication"] == "true"
        await transport.publish("p", [envelope(1)])
        assert await received_ids(transport, "f", 1) == ["m1"]
        assert await received_ids(transport, "a", 1) == ["m1"]
