"""Records per second through the Lambda entry point, against Powertools' BatchProcessor.

    pip install -e '.[bench]'   # aws-lambda-powertools
    python benchmarks/lambda_entry.py [--batches 200] [--runs 5]

Each row hands a function SQS batches of 10 or 100 records whose bodies are our
CloudEvents envelopes of one event type, with a no-op subscriber, and reports records
per second (best of ``--runs``), measured in one run:

- ``entry point``: ``lambda_handler(bus)`` (decode, route, middleware, partial batch
  response, the deadline, the outbox-free drain, in its resident asyncio loop),
  idempotency off, or on
  with :class:`~messagebus.middleware.IdempotencyMiddleware` on the in-memory store.
- ``powertools``: the combination Python teams write by hand today: Powertools'
  ``BatchProcessor`` + ``process_partial_response``, a record handler that parses the body
  with ``json``, picks the logic with a hand-written router (a dict from the CloudEvents
  ``type``), builds the attrs event and calls the same no-op function; with idempotency,
  Powertools' ``idempotent_function`` keyed on the SQS ``messageId``, on an in-memory
  persistence layer written here (Powertools ships none: DynamoDB, Redis, cache).
- ``floor``: the same hand-written loop with neither library (``json.loads``, the dict,
  the event, the call, the response list): what any entry point must at least do.

Every record is new (unique message ids), so idempotency rows claim and complete; no
row measures the duplicate path. Then cold start: ``python -X importtime`` of a function
module's imports (ours: ``messagebus`` and ``messagebus.aws_lambda``; Powertools': its
batch and idempotency utilities), the sum of the top-level imports' cumulative times,
median of ``--runs``, beside the interpreter doing nothing. Target: the entry point
faster than Powertools in every row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from messagebus import Envelope, Event, MessageBus
from messagebus.aws_lambda import lambda_handler
from messagebus.idempotency import InMemoryIdempotencyStore
from messagebus.middleware import IdempotencyMiddleware


@attrs.frozen
class OrderPlaced(Event, name="shop.order.placed"):
    order_id: int
    customer: str


class Context:
    """A Lambda context with plenty of time left."""

    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 600_000


def noop(event: OrderPlaced) -> None:
    """The subscriber: nothing, so the rows measure the entry points."""


def batches(bus: MessageBus, size: int, count: int) -> list[dict[str, Any]]:
    """``count`` SQS events of ``size`` records each, every record a new message."""
    codec = bus.codec
    events = []
    for b in range(count):
        records = []
        for r in range(size):
            body = codec.encode(Envelope(OrderPlaced(b * size + r, "ada"))).decode()
            records.append(
                {
                    "messageId": str(uuid.uuid4()),
                    "receiptHandle": "AQEB...",
                    "body": body,
                    "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1"},
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:shop",
                    "awsRegion": "us-east-1",
                }
            )
        events.append({"Records": records})
    return events


def ours(idempotent: bool) -> tuple[MessageBus, Callable[[Any, Any], Any]]:
    middleware = [IdempotencyMiddleware(InMemoryIdempotencyStore())] if idempotent else []
    bus = MessageBus(service="shop", middleware=middleware)

    @bus.subscriber(OrderPlaced, name="noop")
    async def on_order(event: OrderPlaced) -> None:
        noop(event)

    return bus, lambda_handler(bus)


ROUTES: dict[str, tuple[type[OrderPlaced], Callable[[OrderPlaced], None]]] = {
    "shop.order.placed": (OrderPlaced, noop)
}
"""The hand-written router: the CloudEvents type to the event class and its logic."""


def route(body: str) -> None:
    cloud_event = json.loads(body)
    event_type, logic = ROUTES[cloud_event["type"]]
    logic(event_type(**cloud_event["data"]))


def floor(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event["Records"]:
        try:
            route(record["body"])
        except Exception:  # noqa: BLE001  # what a partial batch response is for
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def powertools(idempotent: bool) -> Callable[[Any, Any], Any]:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.idempotency import (
        IdempotencyConfig,
        idempotent_function,
    )

    processor = BatchProcessor(event_type=EventType.SQS)

    def plain(record: Any) -> None:
        route(record.body)

    handle: Callable[[Any], Any] = plain
    config = IdempotencyConfig(event_key_jmespath="messageId")
    if idempotent:
        store = memory_persistence()

        @idempotent_function(  # type: ignore[untyped-decorator]  # Powertools' is untyped
            data_keyword_argument="record", persistence_store=store, config=config
        )
        def handle_once(record: dict[str, Any]) -> None:
            route(record["body"])

        def handle(record: Any) -> Any:
            return handle_once(record=record.raw_event)

    def function(event: dict[str, Any], context: Any) -> Any:
        config.register_lambda_context(context)
        return process_partial_response(
            event=event, record_handler=handle, processor=processor, context=context
        )

    return function


def memory_persistence() -> Any:
    """Powertools' persistence layer on a dict: what a team would write to test locally."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyItemAlreadyExistsError,
        IdempotencyItemNotFoundError,
    )
    from aws_lambda_powertools.utilities.idempotency.persistence.base import (
        BasePersistenceLayer,
    )
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

    class MemoryPersistence(BasePersistenceLayer):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]  # Powertools' is untyped
            self.records: dict[str, DataRecord] = {}

        def _get_record(self, idempotency_key: str) -> DataRecord:
            try:
                return self.records[idempotency_key]
            except KeyError:
                raise IdempotencyItemNotFoundError from None

        def _put_record(self, data_record: DataRecord) -> None:
            held = self.records.get(data_record.idempotency_key)
            if held is not None and not held.is_expired:
                raise IdempotencyItemAlreadyExistsError
            self.records[data_record.idempotency_key] = data_record

        def _update_record(self, data_record: DataRecord) -> None:
            self.records[data_record.idempotency_key] = data_record

        def _delete_record(self, data_record: DataRecord) -> None:
            self.records.pop(data_record.idempotency_key, None)

    return MemoryPersistence()


def rate(function: Callable[[Any, Any], Any], events: list[dict[str, Any]], runs: int) -> float:
    """Best records per second of ``runs`` passes, each over its own fresh ``events``."""
    context = Context()
    size = len(events[0]["Records"])
    best = 0.0
    per_run = len(events) // runs
    for run in range(runs):
        chunk = events[run * per_run : (run + 1) * per_run]
        start = time.perf_counter()
        for event in chunk:
            response = function(event, context)
            assert response == {"batchItemFailures": []}, response
        elapsed = time.perf_counter() - start
        best = max(best, len(chunk) * size / elapsed)
    return best


IMPORTS = {
    "nothing": "pass",
    "entry point": "import messagebus, messagebus.aws_lambda",
    "powertools": (
        "import aws_lambda_powertools.utilities.batch, aws_lambda_powertools.utilities.idempotency"
    ),
}


def import_ms(statement: str, runs: int) -> float:
    """Median over ``runs`` of the top-level imports' cumulative time (ms)."""
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            capture_output=True,
            text=True,
            check=True,
        )
        total = 0
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _, cumulative, name = line[len("import time:") :].split("|")
            if not name.startswith("  "):  # one space, no nesting: a top-level import
                total += int(cumulative)
        samples.append(total / 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200, help="records of 10 per run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"records/s, best of {args.runs}; ratio = entry point / Powertools (>1: we are faster)")
    print(
        f"{'batch':>5} {'idempotency':>11} {'floor':>9} {'entry point':>11} {'powertools':>10} "
        f"{'ratio':>6}"
    )
    failures = 0
    for size in (10, 100):
        count = max(args.batches * 10 // size, 2) * args.runs
        for idempotent in (False, True):
            bus, function = ours(idempotent)
            events = batches(bus, size, count)
            function(events[0], Context())  # the first invocation enters the bus: not timed
            ours_rate = rate(function, events[1:], args.runs)
            function.close()  # type: ignore[attr-defined]
            peer = rate(powertools(idempotent), batches(bus, size, count), args.runs)
            floor_rate = rate(floor, batches(bus, size, count), args.runs)
            ratio = ours_rate / peer
            failures += ratio < 1
            print(
                f"{size:>5} {'on' if idempotent else 'off':>11} {floor_rate:>9,.0f} "
                f"{ours_rate:>11,.0f} {peer:>10,.0f} {ratio:>6.2f}"
            )
    print()
    print(f"cold start imports (python -X importtime, median of {args.runs}), ms")
    for name, statement in IMPORTS.items():
        print(f"  {name:<12} {import_ms(statement, args.runs):>8.1f}")
    if failures:
        print(f"\n{failures} row(s) slower than Powertools")


if __name__ == "__main__":
    main()
