from __future__ import annotations

import anyio
import pytest

from messagebus import BusStateError, MessageBus

pytestmark = pytest.mark.anyio


class TestLifecycle:
    """`async with bus` owns the bus's background work."""

    async def test_running_flag(self) -> None:
        """running is True inside the block only."""
        bus = MessageBus()
        states = [bus.running]
        async with bus as entered:
            assert entered is bus
            states.append(bus.running)
        states.append(bus.running)
        assert states == [False, True, False]

    async def test_entering_twice_is_refused(self) -> None:
        """One bus runs once at a time."""
        bus = MessageBus()
        async with bus:
            with pytest.raises(BusStateError):
                await bus.__aenter__()

    async def test_can_run_again_after_stopping(self) -> None:
        """A stopped bus can be entered again."""
        bus = MessageBus()
        async with bus:
            pass
        async with bus:
            assert bus.running

    async def test_services_run_while_the_bus_runs_and_are_cancelled_after(self) -> None:
        """Background services start on entry (or when added) and stop on exit."""
        bus = MessageBus()
        events: list[str] = []
        started_early, started_late = anyio.Event(), anyio.Event()

        def service(name: str, started: anyio.Event):  # type: ignore[no-untyped-def]
            async def run() -> None:
                events.append(f"{name} started")
                started.set()
                try:
                    await anyio.sleep_forever()
                finally:
                    events.append(f"{name} stopped")

            return run

        bus._add_service(service("early", started_early))
        assert events == []
        async with bus:
            await started_early.wait()
            bus._add_service(service("late", started_late))
            await started_late.wait()
        assert sorted(events) == ["early started", "early stopped", "late started", "late stopped"]

    async def test_a_crashing_service_stops_the_bus_and_surfaces(self) -> None:
        """A background service's failure cancels the block and is raised on exit."""
        bus = MessageBus()

        async def crash() -> None:
            raise OSError("relay lost its database")

        bus._add_service(crash)
        with pytest.raises(ExceptionGroup) as caught:
            async with bus:
                await anyio.sleep_forever()
        assert caught.group_contains(OSError, match="relay lost")
        assert not bus.running

    async def test_errors_inside_the_block_propagate(self) -> None:
        """Leaving the block by an exception stops the bus and re-raises."""
        bus = MessageBus()
        with pytest.raises(ValueError, match="app failed"):
            async with bus:
                raise ValueError("app failed")
        assert not bus.running
