from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import attrs
import pytest
from structlog.testing import capture_logs

from messagebus import DeliveryExpiredError, TransportUnavailableError
from messagebus.extension import Delivery
from messagebus.transports._heartbeat import visibility_heartbeat

pytestmark = pytest.mark.anyio


@attrs.define
class FakeClock:
    """Time that moves only when the heartbeat sleeps; it stops for good at ``freeze_at``."""

    now: float = 0.0
    freeze_at: float = math.inf

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if self.now + seconds > self.freeze_at:
            await anyio.sleep_forever()
        self.now += seconds
        await anyio.lowlevel.checkpoint()


@attrs.define
class FakeDelivery:
    """A delivery that records extensions (at the clock's time) and fails as told."""

    clock: FakeClock
    failures: dict[int, Exception] = attrs.field(factory=dict)
    extensions: list[tuple[float, float]] = attrs.field(factory=list)
    calls: int = 0
    extended: anyio.Event = attrs.field(factory=anyio.Event)
    body: bytes = b"{}"
    queue: str = "orders"
    receive_count: int = 1

    async def ack(self) -> None:
        raise NotImplementedError

    async def nack(self, delay: float = 0.0) -> None:
        raise NotImplementedError

    async def extend(self, visibility: float) -> None:
        self.calls += 1
        if (failure := self.failures.get(self.calls)) is not None:
            raise failure
        self.extensions.append((self.clock(), visibility))
        self.extended.set()


async def run_until_quiet(delivery: FakeDelivery, clock: FakeClock, **kwargs: float) -> None:
    with anyio.fail_after(5):
        async with visibility_heartbeat(delivery, 30.0, clock=clock, sleep=clock.sleep, **kwargs):
            await anyio.wait_all_tasks_blocked()


class TestVisibilityHeartbeat:
    """Extends a delivery at half its timeout while the block runs, within 12 h."""

    def test_fake_delivery_is_a_delivery(self) -> None:
        """The fake used here satisfies the Delivery protocol."""
        assert isinstance(FakeDelivery(FakeClock()), Delivery)

    async def test_extends_every_half_timeout_by_the_whole_timeout(self) -> None:
        """Each beat, at visibility/2, extends by the full visibility from now."""
        clock = FakeClock(freeze_at=100.0)
        delivery = FakeDelivery(clock)
        await run_until_quiet(delivery, clock)
        assert delivery.extensions == [(15.0 * n, 30.0) for n in range(1, 7)]

    async def test_never_extends_past_the_lifetime_cap(self) -> None:
        """The last extension ends exactly at the cap; then the heartbeat stops and logs."""
        clock = FakeClock()
        delivery = FakeDelivery(clock)
        with capture_logs() as logs:
            await run_until_quiet(delivery, clock, max_lifetime=100.0)
        assert delivery.extensions == [
            (15.0, 30.0),
            (30.0, 30.0),
            (45.0, 30.0),
            (60.0, 30.0),
            (75.0, 25.0),
        ]
        assert [log["event"] for log in logs] == ["visibility heartbeat reached its cap"]

    async def test_cap_counts_from_the_first_receive(self) -> None:
        """received_at in the past shortens what is left of the lifetime."""
        clock = FakeClock()
        delivery = FakeDelivery(clock)
        await run_until_quiet(delivery, clock, max_lifetime=100.0, received_at=-50.0)
        assert delivery.extensions == [(15.0, 30.0), (30.0, 20.0)]

    async def test_lost_receipt_is_logged_and_ends_the_heartbeat(self) -> None:
        """DeliveryExpiredError stops the beats without reaching the handler's block."""
        clock = FakeClock(freeze_at=1000.0)
        delivery = FakeDelivery(clock, failures={2: DeliveryExpiredError("stale")})
        with capture_logs() as logs:
            await run_until_quiet(delivery, clock)
        assert delivery.extensions == [(15.0, 30.0)]
        assert delivery.calls == 2
        assert logs[0]["event"] == "visibility heartbeat lost the receipt"
        assert logs[0]["log_level"] == "warning"
        assert logs[0]["queue"] == "orders"

    async def test_other_transport_errors_are_retried_at_the_next_beat(self) -> None:
        """A failed extension (broker unreachable) is logged; the next beat extends again."""
        clock = FakeClock(freeze_at=50.0)
        delivery = FakeDelivery(clock, failures={1: TransportUnavailableError("down")})
        with capture_logs() as logs:
            await run_until_quiet(delivery, clock)
        assert delivery.extensions == [(30.0, 30.0), (45.0, 30.0)]
        assert [log["event"] for log in logs] == ["visibility heartbeat failed; retrying"]

    async def test_stops_when_the_block_ends(self) -> None:
        """Leaving the block cancels the heartbeat: no extension after the handler is done."""
        clock = FakeClock()
        delivery = FakeDelivery(clock)
        with anyio.fail_after(5):
            async with visibility_heartbeat(delivery, 30.0, clock=clock, sleep=clock.sleep):
                await delivery.extended.wait()
                at_exit = list(delivery.extensions)
        assert at_exit
        assert delivery.extensions == at_exit

    async def test_the_blocks_error_comes_out_as_it_is(self) -> None:
        """A handler's exception leaves the heartbeat unwrapped (no ExceptionGroup)."""
        clock = FakeClock()

        async def fail() -> None:
            async with visibility_heartbeat(
                FakeDelivery(clock), 30.0, clock=clock, sleep=clock.sleep
            ):
                raise KeyError("handler failed")

        with pytest.raises(KeyError, match="handler failed"):
            await fail()

    async def test_runs_on_the_real_clock_by_default(self) -> None:
        """Without a fake clock it beats in real time (here a 40 ms timeout)."""
        delivery = FakeDelivery(FakeClock())
        with anyio.fail_after(5):
            async with visibility_heartbeat(delivery, 0.04):
                await delivery.extended.wait()
        ((at, seconds),) = delivery.extensions
        assert at == 0.0
        assert seconds == pytest.approx(0.04)

    async def test_refuses_a_non_positive_visibility(self) -> None:
        """A zero visibility would beat without pause: ValueError."""
        with pytest.raises(ValueError, match="positive"):
            async with visibility_heartbeat(FakeDelivery(FakeClock()), 0.0):
                pass  # pragma: no cover - never entered
