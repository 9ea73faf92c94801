"""SendCollector on a fake batch call: how concurrent sends share calls, and who gets what.

No AWS here (tests/test_transport_sqs.py runs the same on LocalStack): the fake records
each call's entries and answers as told, so these run on asyncio and trio alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

import anyio
import anyio.lowlevel
import attrs
import pytest

from messagebus import SendError, TransportError, TransportUnavailableError
from messagebus.transports import Outgoing
from messagebus.transports._batch_calls import Failures
from messagebus.transports._coalesce import FIFO_SKIPPED, SendCollector
from messagebus.transports.sqs._background import Background

pytestmark = pytest.mark.anyio

Entry = dict[str, str]


@attrs.define
class FakeCalls:
    """A batch call: records the message ids of each call and answers as told.

    ``refuse`` fails those message ids (SenderFault); ``down`` makes every call holding
    one of those ids fail as a whole; ``block`` holds each call until it is set.
    """

    refuse: frozenset[str] = frozenset()
    down: frozenset[str] = frozenset()
    block: anyio.Event | None = None
    crash: Exception | None = None
    calls: list[list[str]] = attrs.field(factory=list)
    started: anyio.Event = attrs.field(factory=anyio.Event)

    async def __call__(self, entries: list[Entry]) -> Failures:
        self.calls.append([entry["Body"] for entry in entries])
        ids = {entry["Id"] for entry in entries}
        assert len(ids) == len(entries), "entry ids are unique within a call"
        self.started.set()
        if self.block is not None:
            await self.block.wait()
        if self.crash is not None:
            raise self.crash
        if self.down & {entry["Body"] for entry in entries}:
            raise TransportUnavailableError("endpoint down")
        return [
            {"Id": entry["Id"], "SenderFault": True, "Code": "InvalidMessageContents"}
            for entry in entries
            if entry["Body"] in self.refuse
        ]

    @property
    def sent(self) -> list[str]:
        return [body for call in self.calls for body in call]


def messages(*ids: str, size: int = 2) -> list[Outgoing]:
    return [Outgoing(body=b"x" * size, message_id=message_id) for message_id in ids]


async def send(
    collector: SendCollector[Entry],
    batch: Sequence[Outgoing],
    refused: Mapping[int, str] | None = None,
) -> None:
    def entry(index: int, entry_id: str) -> Entry:
        return {"Id": entry_id, "Body": batch[index].message_id}

    await collector.send(batch, refused or {}, entry)


def collector(
    fake: FakeCalls,
    group: anyio.abc.TaskGroup,
    *,
    window: float = 0.01,
    max_bytes: int = 1000,
    in_order: bool = False,
) -> SendCollector[Entry]:
    return SendCollector(fake, group, window, max_bytes=max_bytes, in_order=in_order)


async def cancellable(
    group: anyio.abc.TaskGroup, target: SendCollector[Entry], batch: Sequence[Outgoing]
) -> anyio.CancelScope:
    """Start a send in ``group``, return once it waits, with the scope that cancels it."""

    async def run(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            await send(target, batch)

    scope: anyio.CancelScope = await group.start(run)
    await anyio.wait_all_tasks_blocked()
    return scope


async def in_turn(
    group: anyio.abc.TaskGroup,
    target: SendCollector[Entry],
    *sends: Callable[[], Awaitable[None]],
) -> None:
    """Start ``sends`` in this order, each once the last has queued its messages; close.

    The collectors of these tests have a window of an hour, so that what is left after
    the full calls goes when ``target`` closes, never early because the machine is slow.

    (A send queues its messages before its first await; trio, unlike asyncio, does not
    run tasks in the order they were started.)
    """
    for one in sends:

        async def run(
            one: Callable[[], Awaitable[None]], *, task_status: anyio.abc.TaskStatus[None]
        ) -> None:
            task_status.started()
            await one()

        await group.start(run, one)
    target.close()


@attrs.define
class Outcomes:
    """What each sending task ended with: "ok" or the error's type and details."""

    by_task: dict[str, object] = attrs.field(factory=dict)

    async def run(self, name: str, target: SendCollector[Entry], batch: Sequence[Outgoing]) -> None:
        try:
            await send(target, batch)
        except SendError as error:
            self.by_task[name] = ("SendError", [message_id for message_id, _ in error.failed])
        except TransportError as error:
            # The error itself, not its id: a freed error's id can be reused by the next.
            self.by_task[name] = (type(error).__name__, error)
        else:
            self.by_task[name] = "ok"


class TestSharing:
    """Concurrent sends to one destination share calls of at most 10 entries and max_bytes."""

    async def test_25_single_sends_take_3_calls(self) -> None:
        """10 + 10 at once, the last 5 when the window closes; every message once."""
        fake = FakeCalls()
        async with anyio.create_task_group() as group:
            target = collector(fake, group)
            for n in range(25):
                group.start_soon(send, target, messages(f"m{n}"))
        assert [len(call) for call in fake.calls] == [10, 10, 5]
        assert sorted(fake.sent) == sorted(f"m{n}" for n in range(25))

    async def test_a_full_call_does_not_wait_for_the_window(self) -> None:
        """Ten messages go at once though the window is an hour."""
        fake = FakeCalls()
        async with anyio.create_task_group() as group:
            target = collector(fake, group, window=3600)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as senders:
                    for n in range(10):
                        senders.start_soon(send, target, messages(f"m{n}"))
            group.cancel_scope.cancel()
        assert [len(call) for call in fake.calls] == [10]

    async def test_calls_are_split_by_bytes(self) -> None:
        """400-byte messages under a 1,000-byte limit: two per call."""
        fake = FakeCalls()
        async with anyio.create_task_group() as group:
            target = collector(fake, group, max_bytes=1000)
            for n in range(5):
                group.start_soon(send, target, messages(f"m{n}", size=400))
        assert [len(call) for call in fake.calls] == [2, 2, 1]

    async def test_a_caller_s_many_messages_mix_with_others(self) -> None:
        """One send of 15 and five of 1: 20 messages in two calls, the 15 in their order."""
        fake = FakeCalls()
        async with anyio.create_task_group() as group:
            target = collector(fake, group, window=3600)
            await in_turn(
                group,
                target,
                partial(send, target, messages(*(f"a{n}" for n in range(15)))),
                *(partial(send, target, messages(f"b{n}")) for n in range(5)),
            )
        assert [len(call) for call in fake.calls] == [10, 10]
        assert [body for body in fake.sent if body.startswith("a")] == [f"a{n}" for n in range(15)]

    async def test_refused_messages_are_reported_and_not_sent(self) -> None:
        """An index in ``refused`` is the caller's SendError; its other messages go."""
        fake = FakeCalls()
        async with anyio.create_task_group() as group:
            target = collector(fake, group)
            with pytest.raises(SendError) as raised:
                await send(target, messages("ok", "bad"), {1: "the body is not UTF-8 text"})
        assert list(raised.value.failed) == [("bad", "the body is not UTF-8 text")]
        assert fake.sent == ["ok"]

    async def test_all_refused_makes_no_call(self) -> None:
        """Nothing sendable: SendError at once, no call, no waiting for the window."""
        fake = FakeCalls()
        async with anyio.create_task_group() as group:
            target = collector(fake, group, window=3600)
            with anyio.fail_after(5), pytest.raises(SendError):
                await send(target, messages("bad"), {0: "not UTF-8"})
        assert fake.calls == []


class TestOutcomes:
    """Each caller gets the outcome of its own entries, and only that."""

    async def test_a_refused_entry_fails_its_own_caller_only(self) -> None:
        """AWS refuses one entry of a shared call: that caller's SendError names it alone."""
        fake = FakeCalls(refuse=frozenset({"m1"}))
        outcomes = Outcomes()
        async with anyio.create_task_group() as group:
            target = collector(fake, group)
            group.start_soon(outcomes.run, "a", target, messages("m0"))
            group.start_soon(outcomes.run, "b", target, messages("m1", "m2"))
            group.start_soon(outcomes.run, "c", target, messages("m3"))
        assert len(fake.calls) == 1
        assert outcomes.by_task == {"a": "ok", "b": ("SendError", ["m1"]), "c": "ok"}

    async def test_a_failed_call_is_every_caller_s_own_error(self) -> None:
        """The whole call failed: each caller raises its own TransportUnavailableError."""
        fake = FakeCalls(down=frozenset({"m0"}))
        outcomes = Outcomes()
        async with anyio.create_task_group() as group:
            target = collector(fake, group)
            for name in ("a", "b", "c"):
                group.start_soon(outcomes.run, name, target, messages(f"m{'abc'.index(name)}"))
        kinds = {name: outcome[0] for name, outcome in outcomes.by_task.items()}  # type: ignore[index]
        assert kinds == dict.fromkeys("abc", "TransportUnavailableError")
        errors = [outcome[1] for outcome in outcomes.by_task.values()]  # type: ignore[index]
        assert len({id(error) for error in errors}) == 3

    async def test_a_caller_in_a_sent_and_a_failed_call_gets_send_error(self) -> None:
        """Ten of its messages went, two were in the call that failed: SendError for two."""
        fake = FakeCalls(down=frozenset({"z"}))
        outcomes = Outcomes()
        async with anyio.create_task_group() as group:
            target = collector(fake, group, window=3600)
            await in_turn(
                group,
                target,
                partial(outcomes.run, "a", target, messages(*(f"a{n}" for n in range(12)))),
                partial(outcomes.run, "z", target, messages("z")),
            )
        assert outcomes.by_task["a"] == ("SendError", ["a10", "a11"])
        assert outcomes.by_task["z"][0] == "TransportUnavailableError"  # type: ignore[index]

    async def test_an_unexpected_error_reaches_the_callers(self) -> None:
        """A bug below the call is raised to the waiting callers, not lost in the group."""
        fake = FakeCalls(crash=RuntimeError("bug"))
        async with anyio.create_task_group() as group:
            target = collector(fake, group)
            with pytest.raises(RuntimeError, match="bug"):
                await send(target, messages("m0"))


class TestInOrder:
    """FIFO: one call at a time, in arrival order; a caller's later messages wait on its first."""

    async def test_calls_go_one_at_a_time_in_arrival_order(self) -> None:
        """25 single sends: three calls, never two at once, messages in arrival order."""
        fake = FakeCalls()
        in_flight = peak = 0

        async def counted(entries: list[Entry]) -> Failures:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.lowlevel.checkpoint()
            try:
                return await fake(entries)
            finally:
                in_flight -= 1

        async with anyio.create_task_group() as group:
            target: SendCollector[Entry] = SendCollector(
                counted, group, 3600, max_bytes=1000, in_order=True
            )
            await in_turn(
                group, target, *(partial(send, target, messages(f"m{n:02}")) for n in range(25))
            )
        assert peak == 1
        assert [len(call) for call in fake.calls] == [10, 10, 5]
        assert fake.sent == sorted(fake.sent)

    async def test_after_a_failure_the_caller_s_later_messages_are_not_sent(self) -> None:
        """a's first call fails as a whole: its next messages are skipped, b's still go."""
        fake = FakeCalls(down=frozenset({"a0"}))
        outcomes = Outcomes()
        async with anyio.create_task_group() as group:
            target = collector(fake, group, window=3600, in_order=True)
            await in_turn(
                group,
                target,
                partial(outcomes.run, "a", target, messages(*(f"a{n}" for n in range(12)))),
                partial(outcomes.run, "b", target, messages("b0")),
            )
        assert outcomes.by_task["b"] == "ok"
        assert outcomes.by_task["a"][0] == "TransportUnavailableError"  # type: ignore[index]
        assert fake.calls[1] == ["b0"]  # a10 and a11 were in this call, and left out

    async def test_skipped_messages_say_why(self) -> None:
        """The reason of a skipped FIFO message names the earlier failure."""
        fake = FakeCalls(refuse=frozenset({"a0"}))
        async with anyio.create_task_group() as group:
            target = collector(fake, group, in_order=True)
            with pytest.raises(SendError) as raised:
                await send(target, messages(*(f"a{n}" for n in range(11))))
        reasons = dict(raised.value.failed)
        assert reasons["a0"].startswith("InvalidMessageContents")
        assert reasons["a10"] == FIFO_SKIPPED
        assert "a1" not in reasons  # in the same call as a0: AWS took it


class TestCancellation:
    """A cancelled caller withdraws what has not gone; nobody else's message is lost or doubled."""

    async def test_a_caller_cancelled_before_the_call_is_not_sent(self) -> None:
        """Cancelled while waiting for the window: its message is left out, the others go."""
        fake = FakeCalls()
        async with anyio.create_task_group() as group:
            target = collector(fake, group, window=0.05)
            group.start_soon(send, target, messages("m0"))
            scope = await cancellable(group, target, messages("m1"))
            group.start_soon(send, target, messages("m2"))
            scope.cancel()
        assert sorted(fake.sent) == ["m0", "m2"]

    async def test_a_caller_cancelled_during_the_call_leaves_it_to_finish(self) -> None:
        """The call goes on in the collector's group: the others get their outcome."""
        block = anyio.Event()
        fake = FakeCalls(block=block)
        outcomes = Outcomes()
        async with anyio.create_task_group() as group:
            target = collector(fake, group, window=0.05)
            scope = await cancellable(group, target, messages("m0"))
            group.start_soon(outcomes.run, "other", target, messages("m1"))
            await fake.started.wait()
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            block.set()
        assert outcomes.by_task == {"other": "ok"}
        assert sorted(fake.sent) == ["m0", "m1"]

    async def test_a_cancelled_fifo_caller_s_queued_calls_are_withdrawn(self) -> None:
        """In order, a call waiting behind another is withdrawn if its caller is gone."""
        block = anyio.Event()
        fake = FakeCalls(block=block)
        async with anyio.create_task_group() as group:
            target = collector(fake, group, window=0, in_order=True)
            group.start_soon(send, target, messages("first"))
            await fake.started.wait()
            scope = await cancellable(group, target, messages("second"))
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            block.set()
        assert fake.calls == [["first"]]


class TestClose:
    """close() sends what waits at once; calls cut off are never confirmed."""

    async def test_close_sends_pending_without_waiting(self) -> None:
        """Window of an hour: close() makes the call now, and the sender returns."""
        fake = FakeCalls()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                target = collector(fake, group, window=3600)
                group.start_soon(send, target, messages("m0"))
                await anyio.wait_all_tasks_blocked()
                target.close()
        assert fake.calls == [["m0"]]

    async def test_a_call_cut_off_is_not_confirmed(self) -> None:
        """Cancelled mid-call, the waiting senders raise TransportError, in order or not."""
        for in_order in (False, True):
            fake = FakeCalls(block=anyio.Event())
            outcomes = Outcomes()
            async with anyio.create_task_group() as outer, anyio.create_task_group() as group:
                target = collector(fake, group, window=0, in_order=in_order)
                outer.start_soon(outcomes.run, "a", target, messages("m0"))
                await fake.started.wait()
                outer.start_soon(outcomes.run, "b", target, messages("m1"))
                await anyio.wait_all_tasks_blocked()
                group.cancel_scope.cancel()
            kinds = {name: outcome[0] for name, outcome in outcomes.by_task.items()}  # type: ignore[index]
            assert kinds == {"a": "TransportError", "b": "TransportError"}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
class TestBackground:
    """The transport's background tasks: waited for on close, failures raised, never lost."""

    async def test_wait_covers_tasks_started_meanwhile(self) -> None:
        """A task that starts another: wait() returns once both have ended."""
        background = Background()
        ran: list[str] = []

        async def second() -> None:
            ran.append("second")

        async def first() -> None:
            await anyio.lowlevel.checkpoint()
            background.start_soon(second)
            ran.append("first")

        background.start_soon(first, name="first")
        await background.wait()
        assert ran == ["first", "second"]

    async def test_a_failure_is_raised_once_all_have_ended(self) -> None:
        """wait() raises the first task's failure after the others finished."""
        background = Background()
        finished = anyio.Event()

        async def fail() -> None:
            raise RuntimeError("bug in a background call")

        async def finish() -> None:
            await anyio.lowlevel.checkpoint()
            finished.set()

        background.start_soon(fail)
        background.start_soon(finish)
        with pytest.raises(RuntimeError, match="bug in a background call"):
            await background.wait()
        assert finished.is_set()

    async def test_a_cancelled_wait_cancels_the_tasks(self) -> None:
        """Nobody is left to wait: the tasks are cancelled with the wait."""
        background = Background()
        cancelled = anyio.Event()

        async def forever() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                cancelled.set()

        background.start_soon(forever)
        with anyio.move_on_after(0.05):
            await background.wait()
        with anyio.fail_after(5):
            await cancelled.wait()
