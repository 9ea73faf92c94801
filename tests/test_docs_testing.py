"""Tests of the demo blog service, written as an application writes its own.

docs/testing.md shows this module verbatim (tests/test_docs.py checks they agree).
The fixtures ``fake_clock``, ``messagebus_harness`` and ``messagebus_logs`` come from the
messagebus pytest plugin; ``anyio_backend`` (asyncio and trio) from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from messagebus import MessageBus
from messagebus.demo import (
    POSTS_TABLE,
    Blog,
    PostPublished,
    ProcessPayment,
    PublishPost,
    Receipt,
    RegisterUser,
    UserRegistered,
    build_bus,
)
from messagebus.idempotency import InMemoryIdempotencyStore
from messagebus.outbox import SQLiteOutbox
from messagebus.testing import BusHarness, FakeClock, record_outgoing
from messagebus.transports.memory import InMemoryTransport

pytestmark = pytest.mark.anyio

Logs = list[MutableMapping[str, Any]]


@pytest.fixture
def blog() -> Blog:
    """The service's state: grace follows ada."""
    return Blog(followers={"ada": ["grace"]})


@pytest.fixture
def messagebus_bus(blog: Blog, fake_clock: FakeClock, tmp_path: Path) -> MessageBus:
    """A new blog bus for each test, every timed part on the fake clock."""
    return build_bus(
        blog,
        outbox=SQLiteOutbox(tmp_path / "blog.db", clock=fake_clock),
        transport=InMemoryTransport(clock=fake_clock),
        idempotency=InMemoryIdempotencyStore(clock=fake_clock),
        clock=fake_clock,
        outgoing=[record_outgoing],  # also record what the outbox sends
    )


@pytest.fixture
async def harness(messagebus_harness: BusHarness) -> BusHarness:
    """The running blog, with its posts table."""
    async with messagebus_harness.bus.unit_of_work() as uow:
        await uow.execute(POSTS_TABLE)
    return messagebus_harness


async def test_publishing_a_post_announces_it(harness: BusHarness) -> None:
    """PublishPost's follow-up: PostPublished, caused by the command."""
    post_id = await harness.bus.send(PublishPost("ada", "Hello queues"))

    envelope = harness.recorder.assert_published(
        PostPublished, post_id=post_id, author="ada", title="Hello queues"
    )
    assert envelope.causation_id == envelope.correlation_id  # the command began it all
    harness.recorder.assert_nothing_sent()


async def test_a_worker_runs_until_idle(harness: BusHarness, blog: Blog) -> None:
    """The outbox row is relayed and both subscribers run, with no sleeping."""
    post_id = await harness.bus.send(PublishPost("ada", "Hello queues"))

    idle = await harness.run_until_idle()

    assert blog.inboxes == {"grace": ["ada: Hello queues"]}
    assert blog.search_index == {"hello": post_id, "queues": post_id}
    assert (idle.handled, idle.delayed) == (1, 0)


async def test_the_welcome_email_is_retried(
    harness: BusHarness, blog: Blog, fake_clock: FakeClock, messagebus_logs: Logs
) -> None:
    """The mail server refuses twice: the subscriber's backoff passes on the fake clock."""
    blog.mail_server_failures_left = 2
    await harness.bus.send(RegisterUser("ada", "ada@example.com"))
    harness.recorder.assert_published(UserRegistered, name="ada")

    idle = await harness.run_until_idle()

    assert blog.sent_emails == ["welcome, ada <ada@example.com>"]
    retries = [line for line in messagebus_logs if line["event"] == "retrying handler"]
    assert [line["attempt"] for line in retries] == [1, 2]
    assert idle.advanced == fake_clock.elapsed > 0  # waited on the fake clock only


async def test_a_failing_subscriber_is_dead_lettered(harness: BusHarness, blog: Blog) -> None:
    """Search is down: its subscriber dead-letters after 3 attempts; the other one ran."""
    blog.search_is_down = True
    await harness.bus.send(PublishPost("ada", "Hello queues"))

    await harness.run_until_idle()

    letter = await harness.assert_dead_lettered(PostPublished, handler="update-search-index")
    assert letter.attempts == 3
    assert letter.error_type.endswith("SearchUnavailableError")
    assert blog.inboxes == {"grace": ["ada: Hello queues"]}


async def test_a_repeated_payment_is_charged_once(harness: BusHarness, blog: Blog) -> None:
    """The same idempotency key twice: one charge, the same receipt."""
    payment = ProcessPayment("grace", 500)

    first = await harness.bus.send(payment, idempotency_key="grace-2026-11")
    again = await harness.bus.send(payment, idempotency_key="grace-2026-11")

    assert first == again == Receipt("receipt-1", "grace", 500)
    assert blog.charges == [("grace", 500)]


async def test_search_replaced_for_one_test(harness: BusHarness, blog: Blog) -> None:
    """A stand-in for the search subscriber sees the event; the real index is untouched."""
    seen: list[PostPublished] = []

    async def fake_index(event: PostPublished) -> None:
        seen.append(event)

    with harness.replace_subscriber(PostPublished, "update-search-index", fake_index):
        await harness.bus.send(PublishPost("ada", "Hello queues"))
        await harness.run_until_idle()

    assert [event.title for event in seen] == ["Hello queues"]
    assert blog.search_index == {}
