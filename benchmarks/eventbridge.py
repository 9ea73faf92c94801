"""Events through EventBridge to a worker, against a raw aiobotocore PutEvents loop.

    python benchmarks/eventbridge.py [--n 2000] [--producers 4] [--consumers 4]
                                     [--bus-producers 100] [--workers 4]
                                     [--concurrency 40] [--runs 1]
                                     [--endpoint http://127.0.0.1:4566]

Both variants move ``--n`` events publish -> EventBridge -> rule -> SQS queue -> consumer,
on LocalStack, each on a fresh bus, rule and queue:

- raw: ``--producers`` tasks call ``put_events`` with 10 entries each (the entries the
  bus makes: ``Source``, ``DetailType``, the CloudEvents envelope as ``Detail``, the
  bus), ``--consumers`` tasks ``receive_message`` (10, 1 s long poll) and
  ``delete_message_batch`` what came; no library code.
- bus: ``--bus-producers`` tasks call ``bus.publish(event)`` one event at a time on
  EventBridgeTransport over SQSTransport (what ``eventbridge://`` makes; provisioned
  by the bus:
  the rule on ``detail-type``, its SQS target, the queue policy), so that the batching
  is the transport's coalescing of concurrent publishes (5 ms window), not the
  benchmark's; ``--workers`` :class:`~messagebus.Worker` instances run a no-op
  subscriber until every event was handled.

Figures: events per second from the first publish to the last delete (the last handler
run for the bus), PutEvents calls per event, and every API request per event (PutEvents,
receives, deletes; a botocore ``before-send`` hook counts them); ``vs raw`` is the bus's
throughput as a share of the raw loop's measured in the same run. Targets (issue 16):
at most 0.12 PutEvents calls per event, at least 80 % of the raw loop's throughput.

LocalStack delivers from EventBridge to SQS at about 200 events/s whatever the client
does (see /work/shared/SQS-LOCAL.md): both rows are bounded by that, so the share says
whether the library costs anything on top, not what AWS would sustain.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import attrs
import structlog
from aiobotocore.config import AioConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqs import (  # benchmarks/sqs.py: the same LocalStack, clients and counting
    KEY_ID,
    REGION,
    SECRET,
    OrderPlaced,
    Requests,
    endpoint_for,
    session_with,
    shares,
)

from messagebus import MessageBus, Worker
from messagebus.transports import QueueSpec
from messagebus.transports.eventbridge import EventBridgeTransport
from messagebus.transports.sqs import SQSTransport

LINES = ("X-1:2", "Y-7:1")


@attrs.define
class Calls(Requests):
    """Every HTTP request, and the PutEvents ones apart."""

    put_events: int = 0

    def record(self, **kwargs: object) -> None:
        super().record()
        if str(kwargs.get("event_name", "")).endswith(".PutEvents"):
            self.put_events += 1


@attrs.frozen
class Figure:
    seconds: float
    requests: int
    put_events: int


def entry(bus: str, n: int) -> dict[str, str]:
    """A PutEvents entry as the transport makes it for ``OrderPlaced(n, ...)``."""
    source, wire_type = "orders", "bench.order.placed"
    envelope = {
        "specversion": "1.0",
        "id": secrets.token_hex(16),
        "source": source,
        "type": wire_type,
        "time": "2026-12-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {"order": n, "customer": "c-1234", "lines": list(LINES)},
    }
    return {
        "Source": source,
        "DetailType": wire_type,
        "Detail": json.dumps(envelope),
        "EventBusName": bus,
    }


def client(name: str, calls: Calls, endpoint: str) -> Any:
    config = AioConfig(
        max_pool_connections=50, retries={"total_max_attempts": 3, "mode": "standard"}
    )
    session: Any = session_with(calls)  # create_client's type follows a literal name
    options = {
        "region_name": REGION,
        "endpoint_url": endpoint,
        "config": config,
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
    }
    return session.create_client(name, **options)


async def run_raw(endpoint: str, args: argparse.Namespace) -> Figure:
    calls = Calls()
    name = f"bench-raw-{secrets.token_hex(4)}"
    async with (
        client("events", calls, endpoint) as events,
        client("sqs", calls, endpoint) as sqs,
    ):
        url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        await events.create_event_bus(Name=name)
        pattern = json.dumps({"detail-type": ["bench.order.placed"]})
        await events.put_rule(Name=name, EventBusName=name, EventPattern=pattern)
        await events.put_targets(Rule=name, EventBusName=name, Targets=[{"Id": "q", "Arn": arn}])
        calls.count = calls.put_events = 0
        done = 0

        async def produce(share: range) -> None:
            numbers = list(share)
            for start in range(0, len(numbers), 10):
                entries = [entry(name, n) for n in numbers[start : start + 10]]
                answer = await events.put_events(Entries=entries)
                assert not answer.get("FailedEntryCount")

        async def consume() -> None:
            nonlocal done
            while done < args.n:
                answer = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                messages = answer.get("Messages", [])
                if messages:
                    await sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": message["ReceiptHandle"]}
                            for i, message in enumerate(messages)
                        ],
                    )
                    done += len(messages)

        started = time.perf_counter()
        with anyio.fail_after(600):  # a bounded benchmark: it stops by itself
            async with anyio.create_task_group() as tasks:
                for share in shares(args.n, args.producers):
                    tasks.start_soon(produce, share)
                for _ in range(args.consumers):
                    tasks.start_soon(consume)
        return Figure(time.perf_counter() - started, calls.count, calls.put_events)


async def run_bus(endpoint: str, args: argparse.Namespace) -> Figure:
    calls = Calls()
    prefix = f"bench-{secrets.token_hex(4)}-"
    queues = SQSTransport(
        region=REGION,
        endpoint_url=endpoint,
        prefix=prefix,
        session=session_with(calls),
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    # What eventbridge://REGION?bus=...&prefix=... makes, with clients that count calls.
    transport = EventBridgeTransport(
        queues,
        bus=f"{prefix}bus",
        prefix=prefix,
        open_events=lambda: client("events", calls, endpoint),
    )
    bus = MessageBus(
        transport=transport, service="orders", queue=QueueSpec("orders", max_receives=None)
    )
    handled = 0
    all_handled = anyio.Event()

    @bus.subscriber(OrderPlaced)
    async def on_placed(event: OrderPlaced) -> None:
        nonlocal handled
        handled += 1
        if handled == args.n:
            all_handled.set()

    async with bus:
        await bus.provision()
        calls.count = calls.put_events = 0

        async def produce(share: range) -> None:
            for n in share:
                await bus.publish(OrderPlaced(n, "c-1234", LINES))

        workers = [
            Worker(bus, concurrency=args.concurrency, batch=10, wait=1) for _ in range(args.workers)
        ]
        started = time.perf_counter()
        with anyio.fail_after(600):  # a bounded benchmark: it stops by itself
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
    return Figure(seconds, calls.count, calls.put_events)


async def main_async(endpoint: str, args: argparse.Namespace) -> None:
    variants = {
        "raw aiobotocore PutEvents loop": run_raw,
        "bus.publish -> EventBridge -> worker": run_bus,
    }
    samples: dict[str, list[Figure]] = {name: [] for name in variants}
    small = argparse.Namespace(**{**vars(args), "n": min(args.n, 200)})
    for run in variants.values():
        await run(endpoint, small)  # warm up: connections, LocalStack's code paths
    for _ in range(args.runs):
        for name, run in variants.items():  # interleaved, so drift hits both alike
            samples[name].append(await run(endpoint, args))
    rates = {
        name: statistics.median(args.n / f.seconds for f in figures)
        for name, figures in samples.items()
    }
    raw = rates["raw aiobotocore PutEvents loop"]
    print("| variant | events/s | vs raw | PutEvents/event | API requests/event |")
    print("|---|---|---|---|---|")
    for name, figures in samples.items():
        put = statistics.median(f.put_events / args.n for f in figures)
        requests = statistics.median(f.requests / args.n for f in figures)
        share = rates[name] / raw
        print(f"| {name} | {rates[name]:,.0f} | {share:.0%} | {put:.3f} | {requests:.3f} |")
    print(
        f"\nN={args.n} events, raw: {args.producers} producers of 10-entry calls and "
        f"{args.consumers} consumers; bus: {args.bus_producers} tasks publishing one event "
        f"at a time, {args.workers} workers of concurrency {args.concurrency}; median of "
        f"{args.runs} run(s). Targets: PutEvents/event <= 0.12, vs raw >= 80%."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--bus-producers", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--endpoint", help="a running LocalStack on 127.0.0.1 (default: start one)")
    args = parser.parse_args(argv)
    # The bus logs through structlog; printing a line per message would be the benchmark.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with endpoint_for(args.endpoint) as endpoint:
        anyio.run(main_async, endpoint, args, backend="asyncio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
