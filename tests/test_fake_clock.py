"""The fake clock: readings, sleeps woken in due order by advance, autojump."""

from __future__ import annotations

import math

import anyio
import pytest

from messagebus import InvalidArgumentError
from messagebus.extension import Clock
from messagebus.testing import EPOCH, FakeClock

pytestmark = pytest.mark.anyio


class TestReadings:
    """Wall and monotonic time move together, only when told."""

    def test_starts_at_the_epoch_and_zero(self) -> None:
        """Wall time starts at EPOCH, monotonic at 0; calling the clock reads wall time."""
        clock = FakeClock()
        assert (clock.time(), clock.monotonic(), clock(), clock.elapsed) == (EPOCH, 0.0, EPOCH, 0)
        assert isinstance(clock, Clock)

    async def test_advance_moves_both(self) -> None:
        """An advance moves the wall and the monotonic reading by the same seconds."""
        clock = FakeClock(start=100.0, monotonic_start=5.0)
        await clock.advance(2.5)
        assert (clock.time(), clock.monotonic(), clock.elapsed) == (102.5, 7.5, 2.5)

    @pytest.mark.parametrize("seconds", [-1.0, math.inf, math.nan])
    async def test_advance_refuses_bad_seconds(self, seconds: float) -> None:
        """A negative, infinite or NaN advance is refused with a typed error."""
        with pytest.raises(InvalidArgumentError, match="finite"):
            await FakeClock().advance(seconds)

    def test_repr_tells_elapsed_and_sleepers(self) -> None:
        """The repr shows how far the clock moved and how many wait on it."""
        assert repr(FakeClock()) == "FakeClock(elapsed=0, sleepers=0)"


class TestSleep:
    """A sleep returns once the clock has moved on, never by real time."""

    async def test_sleep_waits_for_the_advance(self) -> None:
        """A sleep of 5 s is still waiting after 4 s and done after 5 s, read at its due time."""
        clock = FakeClock()
        woke: list[float] = []

        async def sleeper() -> None:
            await clock.sleep(5)
            woke.append(clock.monotonic())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sleeper)
            await anyio.wait_all_tasks_blocked()
            assert (clock.sleepers, clock.next_due()) == (1, 5.0)
            await clock.advance(4)
            assert woke == []
            assert clock.next_due() == 1.0
            await clock.advance(1)
            assert woke == [5.0]
        assert (clock.sleepers, clock.next_due()) == (0, None)

    async def test_advance_wakes_in_due_order(self) -> None:
        """One advance past several sleepers wakes them by due time, ties in start order."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.monotonic()))

        async with anyio.create_task_group() as tasks:
            for name, seconds in [("c", 3), ("a", 1), ("b1", 2), ("b2", 2)]:
                tasks.start_soon(sleeper, name, seconds)
                await anyio.wait_all_tasks_blocked()
            await clock.advance(10)
        assert woke == [("a", 1), ("b1", 2), ("b2", 2), ("c", 3)]
        assert clock.monotonic() == 10

    async def test_sleeps_started_during_an_advance_wake_within_it(self) -> None:
        """A sleeper that sleeps again wakes again within the same advance, when due."""
        clock = FakeClock()
        woke: list[float] = []

        async def twice() -> None:
            for _ in range(3):
                await clock.sleep(2)
                woke.append(clock.monotonic())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(twice)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(5)
            assert woke == [2, 4]
            await clock.advance(1)
        assert woke == [2, 4, 6]

    async def test_non_positive_sleep_returns_at_once(self) -> None:
        """sleep(0) and a negative sleep only yield, registering no sleeper."""
        clock = FakeClock()
        await clock.sleep(0)
        await clock.sleep(-1)
        assert (clock.sleepers, clock.elapsed) == (0, 0)

    async def test_cancelled_sleep_leaves(self) -> None:
        """A cancelled sleep no longer counts as a sleeper."""
        clock = FakeClock()
        with anyio.move_on_after(0):
            await clock.sleep(10)
        assert clock.sleepers == 0


class TestMoveOnAfter:
    """A cancel scope that the clock cancels."""

    async def test_cancelled_when_due(self) -> None:
        """The block is cancelled once the clock passes its time, not before."""
        clock = FakeClock()
        finished: list[bool] = []

        async def waiter() -> None:
            with clock.move_on_after(3) as scope:
                await anyio.sleep_forever()
            finished.append(scope.cancelled_caught)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(2.9)
            assert finished == []
            await clock.advance(0.1)
        assert finished == [True]

    async def test_zero_is_at_once_and_infinity_is_never(self) -> None:
        """move_on_after(0) cancels at the first wait; inf registers nothing."""
        clock = FakeClock()
        with clock.move_on_after(0) as scope:
            await anyio.sleep_forever()
        assert scope.cancelled_caught
        with clock.move_on_after(math.inf) as forever:
            assert clock.sleepers == 0
        assert not forever.cancelled_caught

    async def test_a_block_left_early_leaves_no_sleeper(self) -> None:
        """A block that ends before its time unregisters its timer."""
        clock = FakeClock()
        with clock.move_on_after(5):
            assert clock.sleepers == 1
        assert clock.sleepers == 0


class TestAutojump:
    """Jumps to the earliest sleeper whenever every task is blocked."""

    async def test_sleeping_code_runs_at_once(self) -> None:
        """Two tasks sleeping an hour and a day finish, in order, at their due times."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.monotonic()))

        async with clock.autojump(), anyio.create_task_group() as tasks:
            tasks.start_soon(sleeper, "day", 86_400)
            tasks.start_soon(sleeper, "hour", 3_600)
        assert woke == [("hour", 3_600), ("day", 86_400)]

    async def test_waits_for_a_sleeper_to_come(self) -> None:
        """With nobody sleeping it waits; a sleep that starts later is jumped to."""
        clock = FakeClock()
        started = anyio.Event()
        async with clock.autojump(), anyio.create_task_group() as tasks:

            async def late() -> None:
                await started.wait()
                await clock.sleep(7)

            tasks.start_soon(late)
            await anyio.wait_all_tasks_blocked()
            assert clock.elapsed == 0
            started.set()
        assert clock.elapsed == 7

    async def test_does_not_jump_while_a_task_runs(self) -> None:
        """A task that is busy (not blocked) keeps the clock still."""
        clock = FakeClock()
        readings: list[float] = []
        async with clock.autojump(), anyio.create_task_group() as tasks:
            tasks.start_soon(clock.sleep, 1)
            for _ in range(50):
                readings.append(clock.monotonic())
                await anyio.lowlevel.checkpoint()
        assert set(readings) == {0.0}
        assert clock.elapsed == 1
