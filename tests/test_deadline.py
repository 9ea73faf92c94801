"""The deadline seam: an entry point tells middleware the time left; leases are capped by it."""

from __future__ import annotations

import anyio
import attrs
import pytest

from messagebus import Event, MessageBus
from messagebus.extension import deadline, time_left
from messagebus.idempotency import ClaimOutcome, InMemoryIdempotencyStore
from messagebus.middleware import IdempotencyMiddleware

pytestmark = pytest.mark.anyio


@attrs.frozen
class Pinged(Event, name="deadlinetest.pinged"):
    n: int


class LeaseRecorder(InMemoryIdempotencyStore):
    """The memory store, noting the lease of every claim."""

    def __init__(self) -> None:
        super().__init__()
        self.leases: list[float] = []

    async def claim(self, scope: str, key: str, fingerprint: str, lease: float) -> ClaimOutcome:
        self.leases.append(lease)
        return await super().claim(scope, key, fingerprint, lease)


def make_bus(store: LeaseRecorder) -> MessageBus:
    bus = MessageBus(middleware=[IdempotencyMiddleware(store, lease=300.0)])

    @bus.subscriber(Pinged, name="pong")
    async def pong(event: Pinged) -> None:
        pass

    return bus


class TestTimeLeft:
    async def test_no_deadline_means_no_limit(self) -> None:
        """Outside any deadline block, time_left is None."""
        assert time_left() is None

    async def test_the_block_and_the_tasks_it_starts_see_it(self) -> None:
        """A context variable: set for the block's tasks, gone after it."""
        seen: list[float | None] = []
        with deadline(lambda: 12.5):
            seen.append(time_left())
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(lambda: _note(seen))
        assert seen == [12.5, 12.5]
        assert time_left() is None


async def _note(seen: list[float | None]) -> None:
    seen.append(time_left())


class TestIdempotencyLeases:
    async def test_a_lease_is_capped_at_the_time_left(self) -> None:
        """300 s asked, 20 s left: the claim holds 20 s."""
        store = LeaseRecorder()
        async with make_bus(store) as bus:
            with deadline(lambda: 20.0):
                await bus.publish(Pinged(1))
        assert store.leases == [20.0]

    async def test_a_lease_shorter_than_the_time_left_is_kept(self) -> None:
        """The cap only ever shortens; without a deadline the lease is as configured."""
        store = LeaseRecorder()
        async with make_bus(store) as bus:
            with deadline(lambda: 900.0):
                await bus.publish(Pinged(1))
            await bus.publish(Pinged(2))
        assert store.leases == [300.0, 300.0]

    async def test_no_time_left_still_leases_a_second(self) -> None:
        """A store needs a positive lease; the claim holds briefly rather than not at all."""
        store = LeaseRecorder()
        async with make_bus(store) as bus:
            with deadline(lambda: -3.0):
                await bus.publish(Pinged(1))
        assert store.leases == [1.0]
