"""Counters a user can read: runs, failures, retries, dead letters and time per handler."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from messagebus import CommandRejected, Envelope, MessageBus
from messagebus.dead_letters import InMemoryDeadLetterStore
from messagebus.metrics import Counters, CountingDeadLetterStore, HandlerCounts, MetricsMiddleware
from messagebus.middleware import RetryMiddleware
from messagebus.otel import observe_counters
from messagebus.retry import RetryPolicy
from tests.messages import PostId, PostPublished, PublishPost

pytestmark = pytest.mark.anyio


async def no_wait(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


def counted(counters: Counters, *, attempts: int = 3) -> MessageBus:
    """A bus whose retries wrap the counting (each attempt counted) and count dead letters."""
    return MessageBus(
        middleware=[
            RetryMiddleware(events=RetryPolicy(max_attempts=attempts), sleep=no_wait),
            MetricsMiddleware(counters),
        ],
        dead_letters=CountingDeadLetterStore(InMemoryDeadLetterStore(), counters),
    )


class TestMetricsMiddleware:
    """Each run is counted under its handler by outcome, with its duration."""

    async def test_outcomes_are_counted_apart(self) -> None:
        """Processed, rejected and failed runs each have their count; all add time."""
        counters = Counters()
        bus = MessageBus(middleware=[MetricsMiddleware(counters)])
        outcomes: list[Exception | None] = [None, CommandRejected("taken"), ValueError("boom")]

        @bus.handler(PublishPost, name="publish")
        async def publish(command: PublishPost) -> PostId:
            outcome = outcomes.pop(0)
            if outcome is not None:
                raise outcome
            return PostId(1)

        await bus.send(PublishPost("a"))
        with pytest.raises(CommandRejected):
            await bus.send(PublishPost("b"))
        with pytest.raises(ValueError, match="boom"):
            await bus.send(PublishPost("c"))
        counts = counters["publish"]
        assert (counts.processed, counts.rejected, counts.failed, counts.retried) == (1, 1, 1, 0)
        assert counts.runs == 3
        assert counts.seconds > 0

    async def test_a_cancelled_run_is_counted_as_cancelled(self) -> None:
        """Cancellation is neither a success nor a failure."""
        counters = Counters()
        bus = MessageBus(middleware=[MetricsMiddleware(counters)])
        with anyio.CancelScope() as scope:

            @bus.handler(PublishPost, name="publish")
            async def publish(command: PublishPost) -> PostId:
                scope.cancel()
                await anyio.lowlevel.checkpoint()
                raise AssertionError("not reached")

            await bus.send(PublishPost("a"))
        assert counters["publish"] == HandlerCounts(
            cancelled=1, seconds=counters["publish"].seconds
        )

    async def test_retried_attempts_and_dead_letters_are_counted(self) -> None:
        """Inside retries every attempt counts; attempts after the first count as retried."""
        counters = Counters()
        bus = counted(counters)
        failures = {"flaky": 2, "broken": 99}

        def subscriber(name: str) -> None:
            async def run(event: PostPublished) -> None:
                if failures[name]:
                    failures[name] -= 1
                    raise ValueError(name)

            bus.subscriber(PostPublished, run, name=name)

        subscriber("flaky")
        subscriber("broken")
        await bus.publish(PostPublished(1, "x"))
        flaky, broken = counters["flaky"], counters["broken"]
        assert (flaky.processed, flaky.failed, flaky.retried, flaky.dead_lettered) == (1, 2, 2, 0)
        assert (broken.processed, broken.failed, broken.retried, broken.dead_lettered) == (
            0,
            3,
            2,
            1,
        )
        assert counters.total().runs == 6
        assert counters.total().dead_lettered == 1

    async def test_it_is_bound_per_handler(self) -> None:
        """Called directly instead of through bind(), it refuses with a clear error."""
        with pytest.raises(TypeError, match="bound per handler"):
            await MetricsMiddleware()(Envelope(PublishPost("x")), lambda e: no_wait(0))


class TestCountingDeadLetterStore:
    """It counts new dead letters and leaves the records to the store it wraps."""

    async def test_a_failed_replay_is_not_counted_again(self) -> None:
        """A replay that fails replaces its record: still one dead letter."""
        counters = Counters()
        bus = counted(counters, attempts=1)

        @bus.subscriber(PostPublished, name="broken")
        async def broken(event: PostPublished) -> None:
            raise ValueError("still broken")

        await bus.publish(PostPublished(1, "x"))
        [letter] = await bus.dead_letters.list()
        with pytest.raises(ValueError, match="still broken"):
            await bus.replay(letter.id)
        assert counters["broken"].dead_lettered == 1
        assert (await bus.dead_letters.get(letter.id)).attempts == 2  # type: ignore[union-attr]

    async def test_every_method_delegates_to_the_store(self) -> None:
        """list, get, delete and purge act on the wrapped store."""
        inner = InMemoryDeadLetterStore()
        store = CountingDeadLetterStore(inner)
        bus = MessageBus(dead_letters=store)

        @bus.subscriber(PostPublished, name="broken")
        async def broken(event: PostPublished) -> None:
            raise ValueError("no")

        await bus.publish(PostPublished(1, "x"))
        await bus.publish(PostPublished(2, "y"))
        letters = await store.list(handler="broken", limit=10)
        assert letters == await inner.list()
        assert await store.get(letters[0].id) == letters[0]
        assert await store.delete(letters[0].id)
        assert await store.purge(handler="broken", until=datetime.now(UTC)) == 1
        assert list(await inner.list()) == []
        assert store.counters["broken"].dead_lettered == 2

    def test_defaults(self) -> None:
        """Without arguments it keeps records in memory with counters of its own."""
        store = CountingDeadLetterStore()
        assert isinstance(store.store, InMemoryDeadLetterStore)
        assert len(store.counters) == 0


class TestCounters:
    """A read-only mapping of handler names to counts, with copies and totals."""

    def test_reading(self) -> None:
        """of() makes zeros on first use; [] does not; snapshot() does not follow changes."""
        counters = Counters()
        with pytest.raises(KeyError):
            counters["notify"]
        counters.of("notify").processed += 1
        snapshot = counters.snapshot()
        counters.of("notify").processed += 1
        counters.of("index").failed += 1
        assert snapshot == {"notify": HandlerCounts(processed=1)}
        assert dict(counters) == {
            "notify": HandlerCounts(processed=2),
            "index": HandlerCounts(failed=1),
        }
        assert counters.total() == HandlerCounts(processed=2, failed=1)
        assert "notify" in repr(counters)


class TestObserveCounters:
    """The counts, exported as OpenTelemetry observable counters."""

    def test_each_count_is_an_instrument_per_handler(self) -> None:
        """Collections read the live counts, with the handler as an attribute."""
        counters = Counters()
        reader = InMemoryMetricReader()
        observe_counters(counters, MeterProvider(metric_readers=[reader]))
        counters.of("notify").processed = 3
        counters.of("notify").seconds = 0.5
        counters.of("index").dead_lettered = 1
        values = collected(reader)
        assert values[("messagebus.handler.processed", "notify")] == 3
        assert values[("messagebus.handler.processed", "index")] == 0
        assert values[("messagebus.handler.dead_lettered", "index")] == 1
        assert values[("messagebus.handler.duration", "notify")] == 0.5
        assert {name for name, _ in values} == {
            f"messagebus.handler.{field}"
            for field in (
                "processed",
                "rejected",
                "failed",
                "cancelled",
                "retried",
                "dead_lettered",
                "duration",
            )
        }
        counters.of("notify").processed = 4
        assert collected(reader)[("messagebus.handler.processed", "notify")] == 4


def collected(reader: InMemoryMetricReader) -> dict[tuple[str, str], Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (metric.name, str(point.attributes["messagebus.handler"])): point.value  # type: ignore[index, union-attr]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }
