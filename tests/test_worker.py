"""The worker: backpressure, graceful stop, backoff, heartbeat, and a real SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from messagebus import (
    Context,
    DeliveryExpiredError,
    Envelope,
    MessageBus,
    TransportUnavailableError,
    Worker,
    serve,
)
from messagebus.extension import Delivery
from messagebus.retry import ExponentialBackoff
from messagebus.transports.memory import InMemoryTransport
from tests.messages import IndexPost, PostId, PostPublished, PublishPost

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


class FlakyTransport(InMemoryTransport):
    """An in-memory transport whose first ``failures`` receives find no broker."""

    def __init__(self, failures: int, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.failures = failures

    async def receive(self, queue: str, **options: object) -> Sequence[Delivery]:  # type: ignore[override]
        if self.failures:
            self.failures -= 1
            raise TransportUnavailableError("broker unreachable")
        return await super().receive(queue, **options)  # type: ignore[arg-type]


class ClosedAfterSend(InMemoryTransport):
    """Takes messages to the queue, but no follow-up can be published."""

    async def publish(self, topic: str, messages: Sequence[object]) -> None:
        raise TransportUnavailableError("topic unreachable")


class FakeDelivery:
    """A delivery whose settling fails as told, recording what was asked of it."""

    def __init__(self, body: bytes, fail: type[Exception] | None = None) -> None:
        self.body = body
        self.queue = "jobs"
        self.receive_count = 1
        self.fail = fail
        self.calls: list[str] = []

    async def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail is not None:
            raise self.fail(f"{name} failed")

    async def ack(self) -> None:
        await self._call("ack")

    async def nack(self, delay: float = 0.0) -> None:
        await self._call(f"nack {delay}")

    async def extend(self, visibility: float) -> None:
        await self._call(f"extend {visibility}")


class ScriptedTransport(InMemoryTransport):
    """Hands out the given deliveries once, then waits for ever."""

    def __init__(self, deliveries: Sequence[FakeDelivery]) -> None:
        super().__init__()
        self.deliveries = list(deliveries)

    async def receive(self, queue: str, **options: object) -> Sequence[Delivery]:  # type: ignore[override]
        if not self.deliveries:
            await anyio.sleep_forever()
        taken, self.deliveries = self.deliveries, []
        return taken


def jobs(transport: InMemoryTransport) -> MessageBus:
    return MessageBus(transport=transport, service="jobs")


class TestBackpressure:
    """The worker never holds more messages than it can handle at once."""

    async def test_concurrency_bounds_messages_in_flight(self) -> None:
        """With 2 slots, 2 handlers run; the other 3 messages stay visible in the queue."""
        transport = InMemoryTransport()
        bus = jobs(transport)
        release = anyio.Event()
        running: list[int] = []

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            running.append(command.post_id)
            await release.wait()

        async with bus:
            await bus.provision()
            for post in range(5):
                await bus.enqueue(IndexPost(post))
            worker = Worker(bus, concurrency=2)
            async with anyio.create_task_group() as tasks:
                await tasks.start(worker.run)
                await anyio.wait_all_tasks_blocked()
                assert worker.in_flight == 2
                depth = await transport.depth("jobs")
                assert (depth.visible, depth.in_flight) == (3, 2)
                release.set()
                await anyio.wait_all_tasks_blocked()
                assert worker.acked == 5
                worker.stop()
        assert sorted(running) == [0, 1, 2, 3, 4]

    async def test_receives_wait_for_room_for_a_batch(self) -> None:
        """With 20 slots and batches of 10, one freed slot does not make a receive of 1."""
        asked: list[int] = []

        class Recording(InMemoryTransport):
            async def receive(self, queue: str, **options: Any) -> Sequence[Delivery]:  # type: ignore[override]
                asked.append(options["max_messages"])
                return await super().receive(queue, **options)

        transport = Recording()
        bus = jobs(transport)
        releases = {post: anyio.Event() for post in range(25)}

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            await releases[command.post_id].wait()

        async with bus:
            await bus.provision()
            for post in range(25):
                await bus.enqueue(IndexPost(post))
            worker = Worker(bus, concurrency=20)
            async with anyio.create_task_group() as tasks:
                await tasks.start(worker.run)
                await anyio.wait_all_tasks_blocked()
                assert (asked, worker.in_flight) == ([10, 10], 20)
                for post in range(20):
                    releases[post].set()
                    await anyio.wait_all_tasks_blocked()
                assert asked[:3] == [10, 10, 10]  # not 1, 1, 1 ... as slots freed
                for event in releases.values():
                    event.set()
                await anyio.wait_all_tasks_blocked()
                assert worker.acked == 25
                worker.stop()

    async def test_bad_options_are_refused(self) -> None:
        """Zero slots or a zero batch cannot work and are refused."""
        with pytest.raises(ValueError, match="at least 1"):
            Worker(jobs(InMemoryTransport()), concurrency=0)


class TestGracefulStop:
    """stop() stops receiving, lets in-flight work finish in the grace, returns the rest."""

    async def test_in_flight_work_finishes_within_the_grace(self) -> None:
        """A handler running at stop() completes and its message is acked."""
        transport = InMemoryTransport()
        bus = jobs(transport)
        started, release = anyio.Event(), anyio.Event()

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            started.set()
            await release.wait()

        async with bus:
            await bus.provision()
            await bus.enqueue(IndexPost(1))
            worker = Worker(bus, grace=60.0)
            async with anyio.create_task_group() as tasks:
                await tasks.start(worker.run)
                await started.wait()
                worker.stop()
                await anyio.wait_all_tasks_blocked()
                await bus.enqueue(IndexPost(2))  # not received any more
                release.set()
            assert (worker.acked, worker.returned) == (1, 0)
            depth = await transport.depth("jobs")
            assert (depth.visible, depth.in_flight) == (1, 0)

    async def test_work_past_the_grace_is_returned_to_the_queue(self) -> None:
        """A handler still running when the grace ends is cancelled; its message is visible."""
        transport = InMemoryTransport()
        bus = jobs(transport)
        started = anyio.Event()

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            started.set()
            await anyio.Event().wait()  # never finishes

        async with bus:
            await bus.provision()
            await bus.enqueue(IndexPost(1))
            worker = Worker(bus, grace=0.0)
            async with anyio.create_task_group() as tasks:
                await tasks.start(worker.run)
                await started.wait()
                worker.stop()
            assert (worker.acked, worker.returned) == (0, 1)
            depth = await transport.depth("jobs")
            assert (depth.visible, depth.in_flight) == (1, 0)

    async def test_stop_before_run_returns_at_once(self) -> None:
        """A worker stopped before it runs receives nothing."""
        bus = jobs(InMemoryTransport())
        bus.declare(IndexPost)
        async with bus:
            await bus.provision()
            worker = Worker(bus)
            worker.stop()
            await worker.run()
            assert worker.received == 0


class TestBackoff:
    """An unreachable transport makes the worker wait and try again, never stop."""

    async def test_receive_failures_back_off_then_resume(self) -> None:
        """Three failed receives wait 0.1, 0.2, 0.4 s; then the message is handled."""
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        transport = FlakyTransport(3)
        bus = jobs(transport)
        handled = anyio.Event()

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            handled.set()

        async with bus:
            await bus.provision()
            await bus.enqueue(IndexPost(1))
            worker = Worker(bus, sleep=sleep, backoff=ExponentialBackoff(0.1, 2.0, 1.0))
            async with anyio.create_task_group() as tasks:
                await tasks.start(worker.run)
                await handled.wait()
                worker.stop()
        # The heartbeat waits on the same clock afterwards: the backoff waits come first.
        assert waits[:3] == [pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.4)]

    async def test_follow_ups_not_handed_on_return_the_message(self) -> None:
        """If the handler's event cannot be published, the command goes back to the queue."""
        transport = ClosedAfterSend()
        bus = jobs(transport)
        runs: list[int] = []

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            runs.append(1)
            ctx.publish(PostPublished(1, command.title))
            return PostId(1)

        async with bus:
            await bus.provision()
            await bus.enqueue(PublishPost("x"))
            worker = Worker(bus, backoff=ExponentialBackoff(60.0, 2.0, 60.0))
            async with anyio.create_task_group() as tasks:
                await tasks.start(worker.run)
                await anyio.wait_all_tasks_blocked()
                worker.stop()
            assert (runs, worker.acked, worker.returned) == ([1], 0, 1)
            depth = await transport.depth("jobs")
            assert (depth.delayed, depth.in_flight) == (1, 0)


class TestHeartbeat:
    """A long handler keeps its message: the worker extends its visibility."""

    async def test_visibility_is_extended_while_the_handler_runs(self) -> None:
        """Each half timeout the delivery is extended; past the first timeout it stays hidden."""
        now = [0.0]
        transport = InMemoryTransport(clock=lambda: now[0])
        bus = jobs(transport)
        beats_in, beats = anyio.create_memory_object_stream[None]()
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            await beats.receive()

        started, release = anyio.Event(), anyio.Event()

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            started.set()
            await release.wait()

        async with bus, beats_in, beats:
            await bus.provision()
            await bus.enqueue(IndexPost(1))
            worker = Worker(bus, sleep=sleep, visibility_timeout=10.0)
            async with anyio.create_task_group() as tasks:
                await tasks.start(worker.run)
                await started.wait()
                for _ in range(3):
                    now[0] += 5.0
                    await beats_in.send(None)
                    await anyio.wait_all_tasks_blocked()
                depth = await transport.depth("jobs")
                assert (depth.visible, depth.in_flight) == (0, 1)  # 15 s > 10 s timeout
                release.set()
                await anyio.wait_all_tasks_blocked()
                worker.stop()
            assert worker.acked == 1
        assert waits[:3] == [5.0, 5.0, 5.0]


class TestSettlingFailures:
    """A delivery that cannot be settled or extended is logged, never fatal."""

    def body(self, bus: MessageBus) -> bytes:
        return bus.codec.encode(Envelope(IndexPost(1)))

    @pytest.mark.parametrize("error", [TransportUnavailableError, DeliveryExpiredError])
    async def test_failed_ack_is_logged(self, error: type[Exception]) -> None:
        """The handler ran; the ack failed; the message will come back by itself."""
        bus = jobs(InMemoryTransport())
        bus.handler(IndexPost, lambda command: None)
        delivery = FakeDelivery(self.body(bus), fail=error)
        bus.transport = ScriptedTransport([delivery])
        async with bus:
            worker = Worker(bus)
            with capture_logs() as logs:
                async with anyio.create_task_group() as tasks:
                    await tasks.start(worker.run)
                    await anyio.wait_all_tasks_blocked()
                    worker.stop()
        assert delivery.calls == ["ack"]
        assert (worker.acked, worker.returned) == (0, 0)
        assert [log["event"] for log in logs] == ["ack failed; the message will be delivered again"]

    @pytest.mark.parametrize(
        ("error", "logged"),
        [
            (DeliveryExpiredError, []),
            (
                TransportUnavailableError,
                ["could not return a message; it reappears after its timeout"],
            ),
        ],
    )
    async def test_failed_return_is_logged(self, error: type[Exception], logged: list[str]) -> None:
        """A message that cannot be returned at shutdown reappears after its timeout."""
        bus = jobs(InMemoryTransport())
        started = anyio.Event()

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            started.set()
            await anyio.sleep_forever()

        delivery = FakeDelivery(self.body(bus), fail=error)
        bus.transport = ScriptedTransport([delivery])
        async with bus:
            worker = Worker(bus, grace=0.0)
            with capture_logs() as logs:
                async with anyio.create_task_group() as tasks:
                    await tasks.start(worker.run)
                    await started.wait()
                    worker.stop()
        assert delivery.calls == ["nack 0.0"]
        assert [log["event"] for log in logs] == logged

    @pytest.mark.parametrize(
        ("error", "logged"),
        [
            (DeliveryExpiredError, ["visibility heartbeat lost the receipt"]),
            (
                TransportUnavailableError,
                ["visibility heartbeat failed; retrying"] * 2,
            ),
        ],
    )
    async def test_failed_heartbeat_is_logged(
        self, error: type[Exception], logged: list[str]
    ) -> None:
        """A lost receipt stops the heartbeat; a transport error is logged and retried."""
        bus = jobs(InMemoryTransport())
        beats_in, beats = anyio.create_memory_object_stream[None](2)
        started, release = anyio.Event(), anyio.Event()

        async def sleep(seconds: float) -> None:
            await beats.receive()

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            started.set()
            await release.wait()

        delivery = FakeDelivery(self.body(bus))
        bus.transport = ScriptedTransport([delivery])
        async with bus, beats_in, beats:
            worker = Worker(bus, sleep=sleep, visibility_timeout=10.0)
            with capture_logs() as logs:
                async with anyio.create_task_group() as tasks:
                    await tasks.start(worker.run)
                    await started.wait()
                    delivery.fail = error
                    for _ in range(2):
                        await beats_in.send(None)
                        await anyio.wait_all_tasks_blocked()
                    delivery.fail = None
                    release.set()
                    await anyio.wait_all_tasks_blocked()
                    worker.stop()
        assert [log["event"] for log in logs] == logged
        assert delivery.calls[-1] == "ack"


class TestServe:
    """serve() runs the bus and a worker until a signal, then drains and returns."""

    async def test_a_signal_stops_it(self) -> None:
        """Provisioned, ready, a job handled, stopped by SIGUSR1 sent to this process."""
        bus = jobs(InMemoryTransport())
        handled = anyio.Event()

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            handled.set()

        async def ready() -> None:
            await bus.enqueue(IndexPost(1))
            await handled.wait()
            os.kill(os.getpid(), signal.SIGUSR1)

        with anyio.fail_after(10):
            worker = await serve(bus, signals=[signal.SIGUSR1], provision=True, ready=ready)
        assert worker.acked == 1
        assert not bus.running


class TestSignals:
    """serve() in a real process: SIGTERM lets the running job finish, then exits."""

    def run_until_started(self, grace: float) -> tuple[subprocess.Popen[str], list[str]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.worker_process", str(grace)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.strip())
            if line.strip() == "started":
                break
        return process, lines

    def test_sigterm_finishes_in_flight_work(self) -> None:
        """The job started before SIGTERM finishes and is acked; the process exits 0."""
        process, lines = self.run_until_started(grace=30.0)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert "started" in lines
        assert out.splitlines()[-2:] == ["finished", "stopped acked=1 returned=0"]
        assert process.returncode == 0

    def test_sigterm_past_the_grace_returns_the_job(self) -> None:
        """With no grace, the running job is cancelled and returned to its queue."""
        process, _ = self.run_until_started(grace=0.0)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert "finished" not in out
        assert out.strip().endswith("stopped acked=0 returned=1")
        assert process.returncode == 0
