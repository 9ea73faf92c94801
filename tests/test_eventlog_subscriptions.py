from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest

from messagebus.eventlog import LogRecord, Subscription
from messagebus.extension import EventLog
from tests.eventlog_fixtures import check_gapless, event, positions

pytestmark = pytest.mark.anyio


async def take(subscription: Subscription, count: int) -> list[LogRecord]:
    """The next ``count`` records, within a deadline (a missing one fails the test)."""
    records: list[LogRecord] = []
    with anyio.fail_after(10):
        async for record in subscription:
            records.append(record)
            if len(records) == count:
                break
    return records


class TestCatchUpSubscription:
    """Replay then live, on every log (memory, SQLite, PostgreSQL)."""

    async def test_replay_then_live_has_no_gap_or_duplicate(
        self, log: EventLog, other_log: EventLog
    ) -> None:
        """History in pages, then appends racing the switch from two log objects: each once."""
        rng = random.Random(20)
        await log.append([event(n, rng.choice("xyz")) for n in range(25)])
        received: list[LogRecord] = []
        caught_up = anyio.Event()

        async def consume() -> None:
            subscription = log.subscribe(page_size=4, poll_interval=0.02)
            with anyio.fail_after(15):
                async for record in subscription:
                    received.append(record)
                    if record.position == 25:
                        caught_up.set()
                    if len(received) == 25 + 60:
                        return

        async def publish(target: EventLog, base: int) -> None:
            for n in range(0, 30, 2):
                await target.append([event(base + n, rng.choice("xyz")), event(base + n + 1)])

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            # Half of the live appends race the replay; half follow the switch.
            tasks.start_soon(publish, log, 1000)
            await caught_up.wait()
            tasks.start_soon(publish, other_log, 2000)
        check_gapless(received)
        assert received == list(await log.read(1, 1000))

    async def test_an_append_wakes_a_caught_up_subscriber_at_once(self, log: EventLog) -> None:
        """In-process appends notify: no poll interval is waited for."""
        await log.append([event(1)])
        subscription = log.subscribe(poll_interval=3600)
        assert positions(await take(subscription, 1)) == [1]

        async def later() -> None:
            await log.append([event(2, "s"), event(3, "s")])

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(later)
            assert positions(await take(subscription, 2)) == [2, 3]

    async def test_appends_elsewhere_are_found_by_polling(
        self, log: EventLog, other_log: EventLog
    ) -> None:
        """Another log object (another process, say) is not heard: polling finds its events."""
        subscription = log.subscribe(poll_interval=0.02)

        async def elsewhere() -> None:
            await other_log.append([event(1, "s")])

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(elsewhere)
            assert positions(await take(subscription, 1)) == [1]

    async def test_a_replay_ends_when_caught_up_unless_live(self, log: EventLog) -> None:
        """live=False reads the whole log from from_position, then stops."""
        await log.append([event(n) for n in range(7)])
        records = [
            record async for record in log.subscribe(from_position=3, live=False, page_size=2)
        ]
        assert positions(records) == [3, 4, 5, 6, 7]

    async def test_a_checkpoint_resumes_after_the_last_processed(self, log: EventLog) -> None:
        """Leaving async with saves the last record processed; the next run starts after it."""
        await log.append([event(n) for n in range(10)])
        async with log.subscribe(checkpoint="projection", checkpoint_every=1000) as records:
            async for record in records:
                if record.position == 4:
                    break
        assert await log.checkpoints.load("projection") == 4
        resumed = log.subscribe(checkpoint="projection", live=False)
        assert positions([record async for record in resumed]) == [5, 6, 7, 8, 9, 10]
        assert resumed.position == 10
        assert await log.checkpoints.load("projection") == 10

    async def test_a_failing_record_is_not_checkpointed(self, log: EventLog) -> None:
        """A record whose processing raised comes again on the next run."""
        await log.append([event(n) for n in range(5)])

        async def project() -> None:
            async with log.subscribe(checkpoint="projection") as records:
                async for record in records:
                    if record.position == 3:
                        raise RuntimeError("projection bug")

        with pytest.raises(RuntimeError, match="projection bug"):
            await project()
        assert await log.checkpoints.load("projection") == 2
        again = log.subscribe(checkpoint="projection")
        assert positions(await take(again, 1)) == [3]

    async def test_progress_is_saved_every_n_records(self, log: EventLog) -> None:
        """checkpoint_every bounds what a crash (no clean exit) replays."""
        await log.append([event(n) for n in range(10)])
        subscription = log.subscribe(checkpoint="p", checkpoint_every=3)
        await take(subscription, 8)  # processed 7: saved at 3 and 6
        assert await log.checkpoints.load("p") == 6

    async def test_a_reset_checkpoint_rebuilds_from_zero(self, log: EventLog) -> None:
        """After reset, the same name replays the whole log."""
        await log.append([event(n) for n in range(3)])
        first = log.subscribe(checkpoint="read-model", live=False)
        assert positions([record async for record in first]) == [1, 2, 3]
        assert [record async for record in log.subscribe(checkpoint="read-model", live=False)] == []
        await log.checkpoints.reset("read-model")
        rebuilt = log.subscribe(checkpoint="read-model", live=False)
        assert positions([record async for record in rebuilt]) == [1, 2, 3]

    async def test_from_position_applies_only_without_a_checkpoint(self, log: EventLog) -> None:
        """A saved checkpoint wins over from_position; a fresh name starts there."""
        await log.append([event(n) for n in range(4)])
        fresh = log.subscribe(checkpoint="a", from_position=3, live=False)
        assert positions([record async for record in fresh]) == [3, 4]
        await log.checkpoints.save("b", 1)
        saved = log.subscribe(checkpoint="b", from_position=4, live=False)
        assert positions([record async for record in saved]) == [2, 3, 4]

    async def test_bad_arguments_are_refused(self, log: EventLog) -> None:
        """Positions start at 1; page size, checkpoint interval and poll interval are positive."""
        with pytest.raises(ValueError, match="from_position"):
            log.subscribe(from_position=0)
        with pytest.raises(ValueError, match="page_size"):
            log.subscribe(page_size=0)
        with pytest.raises(ValueError, match="poll_interval"):
            log.subscribe(poll_interval=0)


class TestSubscriptionCancellation:
    """A cancelled subscriber still records what it processed."""

    async def test_cancelled_inside_async_with_saves_progress(self, log: EventLog) -> None:
        """Cancelled while processing record 2: record 1 is saved, record 2 is not."""
        await log.append([event(n) for n in range(3)])
        with anyio.CancelScope() as scope:
            async with log.subscribe(checkpoint="c", checkpoint_every=1000) as records:
                async for record in records:
                    if record.position == 2:
                        scope.cancel()
                        await anyio.lowlevel.checkpoint()  # cancelled here, mid-record
        assert scope.cancelled_caught
        assert await log.checkpoints.load("c") == 1
