"""The same application module, unchanged, passes its tests on every transport.

tests/blog_app.py builds its bus on whatever transport it is given, here by URL only, as
an application is configured: ``memory://NAME``; ``sqs://`` (SQS for commands, SNS for
events) and ``eventbridge://`` (SQS for commands, EventBridge for events, routed by
rules to the queue), both on LocalStack (asyncio only: on trio those cases are skipped,
the refusal of trio is tested apart). SNS and EventBridge deliver to SQS asynchronously,
so the tests wait for the application's effects with deadlines, never with sleeps; each
AWS test has its own name prefix (and bus).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from messagebus import MessageBus, Worker
from tests.blog_app import Blog, PostPublished, PublishPost, build

pytestmark = pytest.mark.anyio

PATIENCE = {"memory": 5.0, "sqs": 30.0, "eventbridge": 30.0}


@pytest.fixture(params=["memory", "sqs", "eventbridge"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_transport(
    kind: str, anyio_backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], str]:
    """A function giving the URL of a fresh transport of ``kind`` (a fresh name each)."""
    name = f"app{secrets.token_hex(4)}"
    if kind == "memory":
        return lambda: f"memory://{name}"
    if anyio_backend != "asyncio":
        pytest.skip(
            "the AWS transports run on asyncio only (their refusal of trio is tested apart)"
        )
    endpoint = str(request.getfixturevalue("localstack_endpoint"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # the standard chain, not the URL
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    where = f"us-east-1?prefix={name}-&endpoint_url={endpoint}"
    if kind == "sqs":
        return lambda: f"sqs://{where}"
    return lambda: f"eventbridge://{where}&bus={name}-bus"


@asynccontextmanager
async def running(bus: MessageBus) -> AsyncIterator[MessageBus]:
    """The bus entered and provisioned, with a worker on its queue until the block ends."""
    async with bus:
        await bus.provision()
        worker = Worker(bus, concurrency=10, wait=1)
        async with anyio.create_task_group() as tasks:
            await tasks.start(worker.run)
            yield bus
            worker.stop()


def both_saw(post_id: int) -> Callable[[Blog], bool]:
    return lambda blog: post_id in blog.notified and len(blog.indexed) >= post_id


class TestTheSameApplication:
    """build(transport) works the same whichever transport it gets."""

    async def test_an_enqueued_command_s_event_reaches_both_subscribers(
        self, make_transport: Callable[[], str], kind: str
    ) -> None:
        """enqueue -> worker -> handler -> event via the topic -> both subscribers, once each."""
        blog = Blog()
        async with running(build(make_transport(), blog)) as bus:
            await bus.enqueue(PublishPost("Hello"))
            await blog.wait_until(both_saw(1), within=PATIENCE[kind])
        assert blog.posts == {1: "Hello"}
        assert blog.notified == [1]
        assert blog.indexed == ["Hello"]

    async def test_a_sent_command_answers_and_its_event_travels(
        self, make_transport: Callable[[], str], kind: str
    ) -> None:
        """send() runs the handler here and returns its result; the event goes round."""
        blog = Blog()
        async with running(build(make_transport(), blog)) as bus:
            assert await bus.send(PublishPost("Direct")) == 1
            await blog.wait_until(both_saw(1), within=PATIENCE[kind])
        assert blog.indexed == ["Direct"]

    async def test_published_events_reach_both_subscribers(
        self, make_transport: Callable[[], str], kind: str
    ) -> None:
        """Five events published at once: each subscriber sees all five."""
        blog = Blog()
        async with running(build(make_transport(), blog)) as bus:
            async with anyio.create_task_group() as publishers:
                for post_id in range(1, 6):
                    publishers.start_soon(bus.publish, PostPublished(post_id, f"p{post_id}"))
            await blog.wait_until(
                lambda blog: len(blog.notified) == len(blog.indexed) == 5,
                within=PATIENCE[kind],
            )
        assert sorted(blog.notified) == [1, 2, 3, 4, 5]
        assert sorted(blog.indexed) == [f"p{n}" for n in range(1, 6)]
