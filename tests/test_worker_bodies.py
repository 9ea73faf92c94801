"""No body stops a worker; follow-ups that can never be sent are dead letters at once."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messagebus import (
    EncodeError,
    Envelope,
    Event,
    MessageBus,
    MessageTooLargeError,
    NoHandlerError,
    Worker,
)
from messagebus._redelivery import HANDLER_HEADER
from messagebus._worker import FOLLOW_UPS
from messagebus.transports import Outgoing
from messagebus.transports.memory import InMemoryTransport, MemoryBroker
from tests.messages import IndexPost, PostPublished


@attrs.frozen
class Measured(Event, name="test.measured"):
    value: float


@asynccontextmanager
async def working(bus: MessageBus) -> AsyncIterator[Worker]:
    """Run ``bus`` with a worker; stop it on the way out (the task group re-raises)."""
    worker = Worker(bus, wait=0.5)
    async with bus, anyio.create_task_group() as tasks:
        await bus.provision()
        await tasks.start(worker.run)
        yield worker
        worker.stop()


def service() -> tuple[MessageBus, list[Any]]:
    bus = MessageBus(transport=InMemoryTransport(MemoryBroker()), service="jobs")
    seen: list[Any] = []

    @bus.handler(IndexPost)
    async def index(command: IndexPost) -> None:
        seen.append(command.post_id)

    return bus, seen


VALID = MessageBus().codec  # encodes the one valid message the worker must still handle
VALID.registry.add(IndexPost)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


# Made once: ids are random, and a strategy must take its randomness from hypothesis.
BASE_EVENT = VALID.to_dict(Envelope(IndexPost(1), message_id="m-1"))


def near_valid(changes: dict[str, Any]) -> bytes:
    """A command's body with some attributes (or its data) replaced by arbitrary values."""
    return json.dumps({**BASE_EVENT, **changes}, allow_nan=True).encode()


def nested(depth: int) -> bytes:
    return b'{"specversion":"1.0","data":' + b"[" * depth + b"]" * depth + b"}"


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(
        st.sampled_from(
            ["id", "source", "type", "time", "data", "specversion", "attempt", "headers", "X"]
        ),
        json_values | st.just(math.nan),
        max_size=4,
    ).map(near_valid),
    st.integers(min_value=1_000, max_value=200_000).map(nested),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", errors="surrogatepass")),
)


async def survive(received: list[bytes], *, apart: bool = True) -> None:
    """Put ``received`` on the queue, then a valid message (in the same send unless apart)."""
    bus, seen = service()
    async with working(bus) as worker:
        transport = bus.running_transport()
        messages = [Outgoing(body, f"m-{index}") for index, body in enumerate(received)]
        valid = Outgoing(VALID.encode(Envelope(IndexPost(-1))), "ok")
        if apart:
            await transport.send("jobs", messages)
            await anyio.wait_all_tasks_blocked()
            messages = []
        await transport.send("jobs", [*messages, valid])
        await anyio.wait_all_tasks_blocked()
        letters = await bus.dead_letters.list()
        assert worker.acked == len(received) + 1
        assert worker.returned == 0
    # The valid message after them was handled (not necessarily last: in one send, the
    # worker handles them concurrently, in the order the event loop schedules them).
    assert -1 in seen
    assert len(seen) - 1 + len(letters) == len(received)  # each one handled or a letter
    assert all(letter.error_message for letter in letters)


class TestAnyBody:
    """Whatever arrives, each body is handled or a dead letter, and the worker goes on."""

    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    @settings(
        max_examples=30,
        deadline=None,  # a loaded 2-core machine must not turn slowness into a failure
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(received=st.lists(bodies, min_size=1, max_size=5))
    def test_arbitrary_bodies(self, backend: str, received: list[bytes]) -> None:
        """Random bytes, random JSON, near-valid envelopes, deep nesting: none stops it."""
        # One send per example (a receive on asyncio takes about 0.1 s to be seen idle):
        # the valid message goes last; test_known_hostile_bodies sends it apart.
        anyio.run(partial(survive, received, apart=False), backend=backend)

    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_known_hostile_bodies(self, backend: str) -> None:
        """The bodies of the issue, each named: all dead letters, the next one handled."""
        hostile = [
            b"[" * 10_000,
            nested(100_000),
            b'{"id": NaN}',
            b'{"attempt": 1e999999}',
            b"\xc3\x28\x00",
            near_valid({"id": None}),
            near_valid({"time": "2026-01-01T00:00:00"}),
            near_valid({"data": {"post_id": "1"}}),
            near_valid({"headers": "[" * 50_000}),
            near_valid({"data": {"post_id": 1}, "id": "x" * 900_000}),
        ]
        anyio.run(survive, hostile, backend=backend)


@pytest.mark.anyio
class TestFollowUpsThatCanNeverBeSent:
    """A follow-up too large or not encodable is a dead letter at once, with the reason."""

    @pytest.mark.parametrize(
        ("follow_up", "error"),
        [
            (PostPublished(1, "x" * (1024 * 1024 + 1)), MessageTooLargeError),
            (Measured(math.nan), EncodeError),
        ],
    )
    async def test_dead_letter_not_redelivery(
        self, follow_up: Event, error: type[Exception]
    ) -> None:
        """The handler ran once; the message is acked, not returned; the letter says why."""
        bus = MessageBus(transport=InMemoryTransport(MemoryBroker()), service="jobs")
        bus.declare(PostPublished, Measured)
        runs: list[int] = []

        @bus.handler(IndexPost, name="index-and-announce")
        async def index(command: IndexPost, ctx: Any) -> None:
            runs.append(command.post_id)
            ctx.publish(follow_up)

        async with working(bus) as worker:
            await bus.enqueue(IndexPost(7))
            await anyio.wait_all_tasks_blocked()
            (letter,) = await bus.dead_letters.list()
            assert (worker.acked, worker.returned) == (1, 0)
        assert runs == [7]
        assert letter.handler == FOLLOW_UPS
        assert letter.error_type == f"{error.__module__}.{error.__qualname__}"
        assert letter.message_type == "search.post.index"


@pytest.mark.anyio
class TestRetryForAGoneSubscriber:
    """A deferred retry copy naming a subscriber that no longer exists says so."""

    async def test_becomes_a_dead_letter(self) -> None:
        """Renamed or removed between the failure and the retry: a letter, not silence."""
        bus, _ = service()
        seen: list[int] = []

        @bus.subscriber(PostPublished, name="notify-v2")
        async def notify(event: PostPublished) -> None:
            seen.append(event.post_id)

        async with working(bus):
            copy = Envelope(PostPublished(3, "t"), headers={HANDLER_HEADER: "notify"}, attempt=2)
            await bus.running_transport().send("jobs", [Outgoing(bus.codec.encode(copy), "c")])
            await anyio.wait_all_tasks_blocked()
            letters = await bus.dead_letters.list()
        assert seen == []
        (letter,) = letters
        assert letter.handler == "notify"
        assert letter.error_type == f"{NoHandlerError.__module__}.NoHandlerError"
        assert "no longer exists" in letter.error_message
