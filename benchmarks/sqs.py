"""SQSTransport and the bus on it against the raw aiobotocore client, on LocalStack.

    python benchmarks/sqs.py [--n 5000] [--producers 4] [--consumers 4] [--runs 3]
                             [--bus-producers 100] [--workers 4] [--concurrency 40]
                             [--endpoint http://127.0.0.1:4566]

The transport variants move ``--n`` messages (a 300-byte CloudEvents-like body each)
through one fresh standard queue, with producers and consumers running at the same time:

- raw: ``send_message_batch`` of 10, ``receive_message`` of up to 10 (1 s long poll),
  ``delete_message_batch`` of what came; no library code.
- transport: ``SQSTransport.send`` of 10 messages, ``receive(max_messages=10, wait=1)``,
  and ``ack()`` of every delivery from its own task (acks are collected into
  DeleteMessageBatch calls by the transport).

The bus variants go end to end through the library as an application uses it, every
message on its own, so that the batching is the transport's coalescing of concurrent
calls (sends and publishes within 5 ms, acks within 5 ms), not the benchmark's:

- bus commands: ``--bus-producers`` tasks call ``bus.enqueue(command)`` one command at a
  time (``--n`` in all) to the service's own queue on SQSTransport; ``--workers``
  :class:`~messagebus.Worker` instances (``concurrency=--concurrency``, ``batch=10``,
  ``wait=1``) run a no-op handler on each, until all are handled.
- bus events: the same with ``bus.publish(event)`` to the event's SNS topic, delivered
  raw to the service's queue and to a no-op subscriber.

Why concurrency 40 for a batch of 10: a Worker asks for only as many messages as it has
free slots, and a slot frees once its message is acknowledged; the acks of one receive
reach DeleteMessageBatch in one or two calls, so with ``concurrency=20`` a worker often
woke with 2 or 8 free slots and asked for that many (0.37-0.43 requests per message
measured); with 40 it nearly always asks for 10 (0.30).

The figures are messages per second from the first send to the last delete (to the
last handler run for the bus; median of ``--runs``), API requests per message (every
HTTP request: sends, publishes, receives, deletes; counted with a botocore
``before-send`` hook), and each variant's throughput as a share of the raw client's
measured in the same run. LocalStack is started by the test suite's own code
(tests/localstack.py; installed on first use) unless ``--endpoint`` names a running one
on the loopback interface. LocalStack itself takes most of a core: the raw figure is
the ceiling here, not AWS's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        DeleteMessageBatchRequestEntryTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from messagebus import Command, Event, MessageBus, Worker
from messagebus.extension import Transport
from messagebus.transports import Outgoing, QueueSpec, Topology
from messagebus.transports.sqs import SQSTransport
from tests.localstack import localstack_server, require_loopback

REGION = "us-east-1"
KEY_ID = SECRET = "testing"  # LocalStack's fixed test credentials


@attrs.frozen
class PlaceOrder(Command[None], name="bench.order.place"):
    order: int
    customer: str
    lines: tuple[str, ...]


@attrs.frozen
class OrderPlaced(Event, name="bench.order.placed"):
    order: int
    customer: str
    lines: tuple[str, ...]


@attrs.define
class Requests:
    """Counts every HTTP request the clients of one session send."""

    count: int = 0

    def record(self, **_: object) -> None:
        self.count += 1

    def reset(self) -> None:
        """Count from zero (once the set-up's requests are made)."""
        self.count = 0


@attrs.frozen
class Figure:
    seconds: float
    requests: int


def body(n: int) -> str:
    envelope = {
        "specversion": "1.0",
        "id": f"{secrets.token_hex(16)}",
        "source": "bench",
        "type": "bench.order_placed.v1",
        "time": "2026-12-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {"order": n, "customer": "c-1234", "lines": [{"sku": "X-1", "qty": 2}]},
    }
    return json.dumps(envelope).ljust(300)


def session_with(requests: Requests) -> AioSession:
    session = get_session()
    session.register("before-send", requests.record)
    return session


def shares(n: int, parts: int) -> list[range]:
    return [range(i, n, parts) for i in range(parts)]


async def run_raw(endpoint: str, args: argparse.Namespace) -> Figure:
    requests = Requests()
    config = AioConfig(
        max_pool_connections=50, retries={"total_max_attempts": 3, "mode": "standard"}
    )
    async with session_with(requests).create_client(
        "sqs",
        region_name=REGION,
        endpoint_url=endpoint,
        config=config,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    ) as sqs:
        url = (await sqs.create_queue(QueueName=f"bench-raw-{secrets.token_hex(5)}"))["QueueUrl"]
        requests.reset()
        consumer = RawConsumer(sqs, url, args.n)

        async def produce(share: range) -> None:
            numbers = list(share)
            for start in range(0, len(numbers), 10):
                entries: list[SendMessageBatchRequestEntryTypeDef] = [
                    {"Id": str(i), "MessageBody": body(n)}
                    for i, n in enumerate(numbers[start : start + 10])
                ]
                answer = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
                assert not answer.get("Failed")

        seconds = await timed(produce, consumer.run, args)
        return Figure(seconds, requests.count)


@attrs.define
class RawConsumer:
    """Receives (up to 10, 1 s long poll) and batch-deletes until ``n`` messages came.

    Any number of tasks may :meth:`run` it at once on the one queue.
    """

    sqs: SQSClient
    url: str
    n: int
    done: int = 0

    async def run(self) -> None:
        while self.done < self.n:
            answer = await self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            messages = answer.get("Messages", [])
            if messages:
                entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                    {"Id": str(i), "ReceiptHandle": message["ReceiptHandle"]}
                    for i, message in enumerate(messages)
                ]
                await self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
                self.done += len(messages)


def sqs_transport(
    endpoint: str, requests: Requests, *, prefix: str | None = None, **options: Any
) -> SQSTransport:
    """An SQSTransport on ``prefix`` (or a fresh one) whose clients count into ``requests``."""
    return SQSTransport(
        region=REGION,
        endpoint_url=endpoint,
        prefix=prefix or f"bench-{secrets.token_hex(5)}-",
        session=session_with(requests),
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        **options,
    )


async def run_transport(endpoint: str, args: argparse.Namespace) -> Figure:
    requests = Requests()
    async with sqs_transport(endpoint, requests) as transport:
        await transport.provision(Topology(queues=(QueueSpec("orders", max_receives=None),)))
        requests.reset()
        done = 0

        async def produce(share: range) -> None:
            numbers = list(share)
            for start in range(0, len(numbers), 10):
                await transport.send(
                    "orders",
                    [
                        Outgoing(body=body(n).encode(), message_id=str(n))
                        for n in numbers[start : start + 10]
                    ],
                )

        async def consume() -> None:
            nonlocal done
            while done < args.n:
                deliveries = await transport.receive("orders", max_messages=10, wait=1)
                async with anyio.create_task_group() as acks:
                    for delivery in deliveries:
                        acks.start_soon(delivery.ack)
                done += len(deliveries)

        seconds = await timed(produce, consume, args)
        return Figure(seconds, requests.count)


async def run_bus(
    endpoint: str,
    args: argparse.Namespace,
    *,
    events: bool,
    transport: Transport | None = None,
    requests: Requests | None = None,
) -> Figure:
    """Producers enqueue (or publish) one message at a time; workers run no-op handlers.

    ``transport`` (its clients counting into ``requests``) replaces the SQSTransport made
    here (benchmarks/eventbridge.py gives its EventBridgeTransport).
    """
    requests = Requests() if requests is None else requests
    if transport is None:
        transport = sqs_transport(
            endpoint, requests, ack_window=args.ack_window, send_window=args.send_window
        )
    bus = MessageBus(
        transport=transport, service="orders", queue=QueueSpec("orders", max_receives=None)
    )
    handled = 0
    all_handled = anyio.Event()

    def count() -> None:
        nonlocal handled
        handled += 1
        if handled == args.n:
            all_handled.set()

    if events:

        @bus.subscriber(OrderPlaced)
        async def on_placed(event: OrderPlaced) -> None:
            count()

    else:

        @bus.handler(PlaceOrder)
        async def place(command: PlaceOrder) -> None:
            count()

    lines = ("X-1:2", "Y-7:1")
    async with bus:
        await bus.provision()
        requests.reset()

        async def produce(share: range) -> None:
            for n in share:
                if events:
                    await bus.publish(OrderPlaced(n, "c-1234", lines))
                else:
                    await bus.enqueue(PlaceOrder(n, "c-1234", lines))

        workers = [
            Worker(bus, concurrency=args.concurrency, batch=10, wait=1) for _ in range(args.workers)
        ]
        started = time.perf_counter()
        with anyio.fail_after(300):  # a bounded benchmark: it stops by itself
            async with anyio.create_task_group() as tasks:
                for worker in workers:
                    await tasks.start(worker.run)
                async with anyio.create_task_group() as producers:
                    for share in shares(args.n, args.bus_producers):
                        producers.start_soon(produce, share)
                await all_handled.wait()
                seconds = time.perf_counter() - started
                for worker in workers:
                    worker.stop()
        assert sum(worker.acked for worker in workers) >= args.n
        return Figure(seconds, requests.count)


async def run_bus_commands(endpoint: str, args: argparse.Namespace) -> Figure:
    return await run_bus(endpoint, args, events=False)


async def run_bus_events(endpoint: str, args: argparse.Namespace) -> Figure:
    return await run_bus(endpoint, args, events=True)


async def timed(
    produce: Callable[[range], Coroutine[Any, Any, None]],
    consume: Callable[[], Coroutine[Any, Any, None]],
    args: argparse.Namespace,
) -> float:
    started = time.perf_counter()
    with anyio.fail_after(300):  # a bounded benchmark: it stops by itself
        async with anyio.create_task_group() as tasks:
            for share in shares(args.n, args.producers):
                tasks.start_soon(produce, share)
            for _ in range(args.consumers):
                tasks.start_soon(consume)
    return time.perf_counter() - started


@contextlib.contextmanager
def endpoint_for(given: str | None) -> Iterator[str]:
    if given:
        yield require_loopback(given.rstrip("/"))
        return
    started = time.perf_counter()
    with localstack_server() as endpoint:
        print(f"LocalStack ready at {endpoint} in {time.perf_counter() - started:.1f} s")
        yield endpoint


F = TypeVar("F")


async def sample(
    variants: Mapping[str, Callable[[str, argparse.Namespace], Awaitable[F]]],
    endpoint: str,
    args: argparse.Namespace,
    *,
    warm_up: int,
) -> dict[str, list[F]]:
    """Run each variant once on ``warm_up`` messages, then ``args.runs`` times, interleaved."""
    samples: dict[str, list[F]] = {name: [] for name in variants}
    small = argparse.Namespace(**{**vars(args), "n": min(args.n, warm_up)})
    for run in variants.values():
        await run(endpoint, small)  # warm up: connections, LocalStack's code paths
    for _ in range(args.runs):
        for name, run in variants.items():  # interleaved, so drift hits both alike
            samples[name].append(await run(endpoint, args))
    return samples


async def main_async(endpoint: str, args: argparse.Namespace) -> None:
    variants = {
        "raw aiobotocore": run_raw,
        "SQSTransport": run_transport,
        "bus commands (enqueue -> worker)": run_bus_commands,
        "bus events (publish -> SNS -> worker)": run_bus_events,
    }
    samples = await sample(variants, endpoint, args, warm_up=500)
    rates = {
        name: statistics.median(args.n / f.seconds for f in figures)
        for name, figures in samples.items()
    }
    per_message = {
        name: statistics.median(f.requests / args.n for f in figures)
        for name, figures in samples.items()
    }
    raw = rates["raw aiobotocore"]
    print("| variant | messages/s | vs raw | API requests/message |")
    print("|---|---|---|---|")
    for name in variants:
        print(
            f"| {name} | {rates[name]:,.0f} | {rates[name] / raw:.0%} | {per_message[name]:.3f} |"
        )
    print(
        f"\nN={args.n} messages of 300 bytes, {args.producers} producers and {args.consumers} "
        f"consumers at once (bus: {args.bus_producers} producer tasks one message at a time, "
        f"{args.workers} workers of concurrency {args.concurrency}), median of {args.runs} "
        "runs; vs raw = share of the raw client's throughput in the same run."
    )


def arguments(description: str, *, n: int, runs: int) -> argparse.ArgumentParser:
    """The options the LocalStack benchmarks share (this one and eventbridge.py)."""
    parser = argparse.ArgumentParser(description=description.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--bus-producers", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--endpoint", help="a running LocalStack on 127.0.0.1 (default: start one)")
    return parser


def run_on_localstack(
    main: Callable[[str, argparse.Namespace], Coroutine[Any, Any, None]], args: argparse.Namespace
) -> int:
    """Run ``main(endpoint, args)`` on asyncio against LocalStack, the bus's logs quiet."""
    # The bus logs through structlog; printing a line per message would be the benchmark.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with endpoint_for(args.endpoint) as endpoint:
        anyio.run(main, endpoint, args, backend="asyncio")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__ or "", n=5_000, runs=3)
    parser.add_argument("--ack-window", type=float, default=0.005, help="bus rows' transport")
    parser.add_argument("--send-window", type=float, default=0.005, help="bus rows' transport")
    return run_on_localstack(main_async, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
