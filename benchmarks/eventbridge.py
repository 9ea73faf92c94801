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
import secrets
import statistics
import sys
from pathlib import Path
from typing import Any

import attrs
from aiobotocore.config import AioConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqs import (  # benchmarks/sqs.py: the same LocalStack, clients, rows and counting
    KEY_ID,
    REGION,
    SECRET,
    RawConsumer,
    Requests,
    arguments,
    run_on_localstack,
    sample,
    session_with,
    sqs_transport,
    timed,
)
from sqs import run_bus as sqs_run_bus

from messagebus.transports.eventbridge import EventBridgeTransport

LINES = ("X-1:2", "Y-7:1")


@attrs.define
class Calls(Requests):
    """Every HTTP request, and the PutEvents ones apart."""

    put_events: int = 0

    def record(self, **kwargs: object) -> None:
        super().record()
        if str(kwargs.get("event_name", "")).endswith(".PutEvents"):
            self.put_events += 1

    def reset(self) -> None:
        super().reset()
        self.put_events = 0


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
        calls.reset()

        async def produce(share: range) -> None:
            numbers = list(share)
            for start in range(0, len(numbers), 10):
                entries = [entry(name, n) for n in numbers[start : start + 10]]
                answer = await events.put_events(Entries=entries)
                assert not answer.get("FailedEntryCount")

        seconds = await timed(produce, RawConsumer(sqs, url, args.n).run, args)
        return Figure(seconds, calls.count, calls.put_events)


async def run_bus(endpoint: str, args: argparse.Namespace) -> Figure:
    """benchmarks/sqs.py's bus events row, on EventBridge instead of SNS."""
    calls = Calls()
    prefix = f"bench-{secrets.token_hex(4)}-"
    # What eventbridge://REGION?bus=...&prefix=... makes, with clients that count calls.
    transport = EventBridgeTransport(
        sqs_transport(endpoint, calls, prefix=prefix),
        bus=f"{prefix}bus",
        prefix=prefix,
        open_events=lambda: client("events", calls, endpoint),
    )
    figure = await sqs_run_bus(endpoint, args, events=True, transport=transport, requests=calls)
    return Figure(figure.seconds, figure.requests, calls.put_events)


async def main_async(endpoint: str, args: argparse.Namespace) -> None:
    variants = {
        "raw aiobotocore PutEvents loop": run_raw,
        "bus.publish -> EventBridge -> worker": run_bus,
    }
    samples = await sample(variants, endpoint, args, warm_up=200)
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
    parser = arguments(__doc__ or "", n=2_000, runs=1)
    return run_on_localstack(main_async, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
