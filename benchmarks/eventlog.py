"""Throughput of the event logs: appends per second and replay speed, in one run.

    python benchmarks/eventlog.py [--n 2000] [--replay 20000] [--dsn DSN]

Appends: ``--n`` events appended one per call, then in batches of 10, by one task and by
4 concurrent tasks (events spread over 16 streams). Replay: ``--replay`` events read back
from position 1 through a subscription (``live=False``, pages of 500), decoding each.
Logs: in memory (the floor every figure is divided by), SQLite (a file in a temporary
directory) and PostgreSQL (``--dsn``, default the local test server; left out with a note
if unreachable). Last, on PostgreSQL, the two ways of serialising appends that keep
positions gapless in commit order, side by side on raw psycopg with 4 threads: the head
row lock this library uses, and ``pg_advisory_xact_lock`` plus ``max(position) + 1``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs

from messagebus import Envelope, Event, MessageRegistry, WireCodec
from messagebus.eventlog import InMemoryEventLog, PostgresEventLog, SQLiteEventLog
from messagebus.extension import EventLog

DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/test"


@attrs.frozen
class OrderPlaced(Event, name="bench.order.placed"):
    order_id: int
    customer: str
    amount_cents: int


def make_codec() -> WireCodec:
    registry = MessageRegistry()
    registry.add(OrderPlaced)
    return WireCodec(registry, source="/bench")


CODEC = make_codec()
OpenLog = Callable[[], AbstractAsyncContextManager[EventLog]]


@asynccontextmanager
async def memory() -> AsyncIterator[EventLog]:
    yield InMemoryEventLog(codec=CODEC)


@asynccontextmanager
async def sqlite() -> AsyncIterator[EventLog]:
    with tempfile.TemporaryDirectory() as scratch:
        async with SQLiteEventLog(Path(scratch) / "bench.sqlite3", codec=CODEC) as log:
            yield log


def postgres(dsn: str) -> OpenLog:
    @asynccontextmanager
    async def open_log() -> AsyncIterator[EventLog]:
        # A schema of its own per run, dropped after, so runs never see each other.
        import psycopg

        schema = f"bench_eventlog_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        try:
            async with PostgresEventLog(dsn, codec=CODEC, schema=schema) as log:
                yield log
        finally:
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA {schema} CASCADE")

    return open_log


def envelopes(start: int, count: int) -> list[Envelope[OrderPlaced]]:
    return [
        Envelope(OrderPlaced(n, f"customer-{n % 97}", n * 7), group_key=f"order-{n % 16}")
        for n in range(start, start + count)
    ]


async def append_rate(log: EventLog, n: int, batch: int, concurrency: int) -> float:
    """Return events per second for ``n`` events in batches over ``concurrency`` tasks."""
    calls = n // batch

    async def worker(offset: int) -> None:
        for call in range(offset, calls, concurrency):
            await log.append(envelopes(call * batch, batch))

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for offset in range(concurrency):
            tasks.start_soon(worker, offset)
    return calls * batch / (time.perf_counter() - started)


async def replay_rate(log: EventLog, n: int) -> float:
    """Return events per second reading ``n`` events back through a subscription."""
    for start in range(0, n, 500):
        await log.append(envelopes(start, min(500, n - start)))
    started = time.perf_counter()
    count = sum([1 async for _ in log.subscribe(live=False, page_size=500)])
    elapsed = time.perf_counter() - started
    assert count == n, count
    return n / elapsed


async def measure(open_log: OpenLog, n: int, replay: int) -> dict[str, float]:
    figures = {}
    for label, batch, concurrency in [
        ("append 1/call, 1 task", 1, 1),
        ("append 10/call, 1 task", 10, 1),
        ("append 1/call, 4 tasks", 1, 4),
        ("append 10/call, 4 tasks", 10, 4),
    ]:
        async with open_log() as log:
            figures[label] = await append_rate(log, n, batch, concurrency)
    async with open_log() as log:
        figures[f"replay {replay}"] = await replay_rate(log, replay)
    return figures


def lock_comparison(dsn: str, n: int, threads: int = 4) -> dict[str, float]:
    """Appends per second, head row lock vs advisory lock, on raw psycopg threads."""
    import psycopg

    schema = f"bench_locks_{uuid.uuid4().hex[:12]}"
    body = CODEC.encode(envelopes(0, 1)[0]).decode()
    statements = {
        "head row lock": [
            f"UPDATE {schema}.head SET position = position + 1 WHERE id = 1 RETURNING position",
        ],
        "advisory lock": [
            "SELECT pg_advisory_xact_lock(4242)",
            f"SELECT coalesce(max(position), 0) + 1 FROM {schema}.log",
        ],
    }
    rates = {}
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute(f"CREATE SCHEMA {schema}")
    try:
        for label, take_position in statements.items():
            with psycopg.connect(dsn, autocommit=True) as setup:
                setup.execute(f"DROP TABLE IF EXISTS {schema}.log, {schema}.head")
                setup.execute(f"CREATE TABLE {schema}.log (position bigint PRIMARY KEY, body text)")
                setup.execute(f"CREATE TABLE {schema}.head (id int PRIMARY KEY, position bigint)")
                setup.execute(f"INSERT INTO {schema}.head VALUES (1, 0)")

            def worker(count: int, lock_statements: list[str] = take_position) -> None:
                with psycopg.connect(dsn) as connection:
                    for _ in range(count):
                        with connection.transaction():
                            row: Any = None
                            for statement in lock_statements:
                                row = connection.execute(statement).fetchone()
                            connection.execute(
                                f"INSERT INTO {schema}.log VALUES (%s, %s)", [row[0], body]
                            )

            workers = [
                threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)
            ]
            started = time.perf_counter()
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
            rates[label] = n // threads * threads / (time.perf_counter() - started)
    finally:
        with psycopg.connect(dsn, autocommit=True) as setup:
            setup.execute(f"DROP SCHEMA {schema} CASCADE")
    return rates


def postgres_reachable(dsn: str) -> bool:
    try:
        import psycopg

        psycopg.connect(dsn, connect_timeout=3).close()
    except Exception as error:  # noqa: BLE001  # any failure means: leave PostgreSQL out
        print(f"PostgreSQL left out: {error}".strip(), file=sys.stderr)
        return False
    return True


async def main(args: argparse.Namespace) -> None:
    logs: dict[str, OpenLog] = {"memory": memory, "sqlite": sqlite}
    if postgres_reachable(args.dsn):
        logs["postgres"] = postgres(args.dsn)
    results = {
        name: await measure(open_log, args.n, args.replay) for name, open_log in logs.items()
    }
    floor = results["memory"]
    print(f"{'events/s':<26}" + "".join(f"{name:>22}" for name in results))
    for label in floor:
        cells = "".join(
            f"{figures[label]:>12,.0f} ({figures[label] / floor[label]:5.3f}x)"
            for figures in results.values()
        )
        print(f"{label:<26}{cells}")
    if "postgres" in logs:
        rates = lock_comparison(args.dsn, args.n)
        head = rates["head row lock"]
        print("\nPostgreSQL, gapless positions, 4 threads, 1 event per transaction:")
        for label, rate in rates.items():
            print(f"  {label:<16}{rate:>10,.0f} events/s ({rate / head:5.3f}x the head row)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="events per append figure")
    parser.add_argument("--replay", type=int, default=20_000, help="events to replay")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    anyio.run(main, parser.parse_args())
