"""Throughput and latency of the transactional outbox, on SQLite and PostgreSQL.

    python benchmarks/outbox.py [--transactions 2000] [--relayed 20000] [--dsn DSN]
                                [--cross 60] [--cross-only]

Figures per store, the relay delivering to an in-memory sink (and once through the
bus's own delivery to an ``InMemoryTransport``, for the cost of the real path):

- commit: units of work committed one after the other, each with 1 or 10 messages,
  while a relay (``run()``, woken by the store's commit listener) delivers them; the
  figure is messages per second from the first commit to the last delivery.
- relay: ``--relayed`` messages committed beforehand, then one ``flush()`` of them all
  (batches of ``--batch``); messages per second relayed (claim, deliver, mark sent).
- latency: one message per unit of work, the next one after the previous arrived; the
  time from the end of the ``async with`` (committed) to the sink receiving it, p50 and
  p99, with the in-process flush (notify) and with polling only (``--poll`` s interval);
  a random pause of up to ``--poll`` between messages keeps commits out of step with
  the poll.

Across processes (PostgreSQL only): a second store object on its own pool commits, as a
producer process would; the relay's store tells it nothing in-process:

- cross latency: as above, with the relay on the default ``poll_interval`` (1 s), once
  polling only (``notify=False``), once woken by LISTEN/NOTIFY (``notify=True``);
  ``--cross`` samples each (the polling run takes about a second per sample).
- notify cost: units of work of 1 message committed one after the other, and by 4 tasks
  at once (the pool's size), with and without the ``pg_notify`` (a session LISTENing);
  units of work per second, median of ``--runs`` (the two alternated).

PostgreSQL is the local test server (``--dsn``), a schema of its own per run, dropped
after; left out with a note if it cannot be reached.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import attrs

from messagebus import Event, MessageBus
from messagebus._outlets import Departure, OutboxOutlet
from messagebus.outbox import (
    DeliveryFailure,
    OutboxMessage,
    OutboxRelay,
    PostgresOutbox,
    SQLiteOutbox,
)
from messagebus.transports import Destination
from messagebus.transports.memory import InMemoryTransport


async def deliver_rows(bus: MessageBus, rows: Sequence[OutboxMessage]) -> list[DeliveryFailure]:
    """Deliver ``rows`` as the relay of an outbox on ``bus`` would."""
    outlet = OutboxOutlet(
        bus,
        Departure(bus.codec, (), None, ()),
        transport=bus.running_transport,
        handle=bus.handle_delivered,
    )
    return await outlet.deliver(rows)


DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/test"


@attrs.frozen
class Published(Event, name="bench.post.published"):
    post_id: int


Store = SQLiteOutbox | PostgresOutbox
OpenStore = Callable[..., AbstractAsyncContextManager[Store]]
"""Opens a store; ``notify=False`` turns PostgreSQL's NOTIFY off (SQLite has none)."""
BODY = b'{"specversion":"1.0","type":"blog.post.published","data":{"post_id":1}}' * 3


@asynccontextmanager
async def sqlite(notify: bool = True) -> AsyncIterator[Store]:
    """A fresh SQLite file (``notify`` does not apply: SQLite has no cross-process wake-up)."""
    with tempfile.TemporaryDirectory() as scratch:
        async with SQLiteOutbox(Path(scratch) / "bench.sqlite3") as store:
            yield store


def postgres(dsn: str) -> OpenStore:
    @asynccontextmanager
    async def open_store(notify: bool = True) -> AsyncIterator[Store]:
        import psycopg
        from psycopg import sql

        schema = f"bench_outbox_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            async with PostgresOutbox(dsn, schema=schema, notify=notify) as store:
                yield store
        finally:
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    return open_store


@asynccontextmanager
async def postgres_schema(dsn: str) -> AsyncIterator[str]:
    import psycopg
    from psycopg import sql

    schema = f"bench_outbox_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def messages(count: int) -> list[OutboxMessage]:
    return [OutboxMessage(uuid.uuid4().hex, Destination.topic("blog"), BODY) for _ in range(count)]


class Sink:
    """Counts deliveries; sets ``done`` at ``expected``; notes each id's arrival time."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = anyio.Event()
        self.arrived: dict[str, float] = {}
        self.waiting: dict[str, anyio.Event] = {}

    async def __call__(self, batch: Sequence[OutboxMessage]) -> Sequence[DeliveryFailure]:
        now = time.perf_counter()
        for m in batch:
            self.arrived[m.id] = now
            if (event := self.waiting.pop(m.id, None)) is not None:
                event.set()
        self.count += len(batch)
        if self.count >= self.expected:
            self.done.set()
        return ()


async def commit_throughput(open_store: OpenStore, transactions: int, per: int) -> float:
    async with open_store() as store:
        sink = Sink(transactions * per)
        relay = OutboxRelay(store, sink, poll_interval=3600)
        store.on_commit(relay.notify)
        async with anyio.create_task_group() as tasks:
            await tasks.start(relay.run)
            start = time.perf_counter()
            for _ in range(transactions):
                async with store.transaction() as tx:
                    tx.add(messages(per))
            await sink.done.wait()
            elapsed = time.perf_counter() - start
            tasks.cancel_scope.cancel()
    return transactions * per / elapsed


async def relay_throughput(open_store: OpenStore, count: int, batch: int) -> float:
    async with open_store() as store:
        for start in range(0, count, 1000):
            async with store.transaction() as tx:
                tx.add(messages(min(1000, count - start)))
        sink = Sink(count)
        started = time.perf_counter()
        delivered = await OutboxRelay(store, sink, batch_size=batch).flush()
        elapsed = time.perf_counter() - started
    assert delivered == count, delivered
    return count / elapsed


async def relay_to_transport(open_store: OpenStore, count: int, batch: int) -> float:
    """As relay_throughput, delivering through the bus's own path to an InMemoryTransport."""
    bus = MessageBus(transport=InMemoryTransport(), service="bench")
    bus.subscriber(Published, lambda event: None)  # so the queue is subscribed to the topic
    async with open_store() as store, bus:
        await bus.provision()
        for start in range(0, count, 1000):
            async with store.transaction() as tx:
                tx.add(
                    OutboxMessage(uuid.uuid4().hex, Destination.topic("bench-post-published"), BODY)
                    for _ in range(min(1000, count - start))
                )

        async def deliver(rows: Sequence[OutboxMessage]) -> Sequence[DeliveryFailure]:
            return await deliver_rows(bus, rows)

        started = time.perf_counter()
        delivered = await OutboxRelay(store, deliver, batch_size=batch).flush()
        elapsed = time.perf_counter() - started
        depth = await bus.transport.depth("bench")  # type: ignore[union-attr]
    assert delivered == count == depth.visible, (delivered, depth)
    return count / elapsed


async def latency(open_store: OpenStore, count: int, *, notify: bool, poll: float) -> list[float]:
    # Polling only means no wake-up of any kind: nor the NOTIFY of PostgreSQL.
    async with open_store(notify=notify) as store:
        sink = Sink(count)
        relay = OutboxRelay(store, sink, poll_interval=poll if not notify else 3600)
        if notify:
            store.on_commit(relay.notify)
        samples: list[float] = []
        async with anyio.create_task_group() as tasks:
            await tasks.start(relay.run)
            for _ in range(count):
                (m,) = messages(1)
                arrived = sink.waiting[m.id] = anyio.Event()
                async with store.transaction() as tx:
                    tx.add(m)
                committed = time.perf_counter()
                await arrived.wait()
                samples.append((sink.arrived[m.id] - committed) * 1000)
                # A random pause: commits must not fall in step with the poll's phase.
                await anyio.sleep(random.uniform(0, poll))
            tasks.cancel_scope.cancel()
    return samples


async def cross_latency(dsn: str, count: int, *, notify: bool) -> list[float]:
    """Commit on one store object, relay on another (its own pool): no in-process hint."""
    async with (
        postgres_schema(dsn) as schema,
        PostgresOutbox(dsn, schema=schema, notify=notify) as producer,
        PostgresOutbox(dsn, schema=schema, notify=notify) as relayed,
    ):
        sink = Sink(count + 1)
        relay = OutboxRelay(relayed, sink)  # the default poll_interval
        samples: list[float] = []
        async with anyio.create_task_group() as tasks:
            await tasks.start(relay.run)
            for number in range(count + 1):
                (m,) = messages(1)
                arrived = sink.waiting[m.id] = anyio.Event()
                async with producer.transaction() as tx:
                    tx.add(m)
                committed = time.perf_counter()
                await arrived.wait()
                if number:  # the first one waits for the listener to connect
                    samples.append((sink.arrived[m.id] - committed) * 1000)
                # Out of step with the poll's phase (polling); a short pause (notify).
                await anyio.sleep(random.uniform(0, 1.0 if not notify else 0.005))
            tasks.cancel_scope.cancel()
    return samples


async def commit_rate(dsn: str, transactions: int, *, notify: bool, tasks: int) -> float:
    """Units of work of one message per second, by ``tasks`` committing tasks."""
    async with (
        postgres_schema(dsn) as schema,
        PostgresOutbox(dsn, schema=schema, notify=notify) as store,
    ):
        listening = anyio.Event()

        def woken() -> None:
            listening.set()

        async def produce(count: int) -> None:
            for _ in range(count):
                async with store.transaction() as tx:
                    tx.add(messages(1))

        async with anyio.create_task_group() as group:
            if notify:  # a relay would be listening: NOTIFY's cost with a listener
                group.start_soon(store.watch_commits, woken)
                await listening.wait()
            start = time.perf_counter()
            async with anyio.create_task_group() as producers:
                for _ in range(tasks):
                    producers.start_soon(produce, transactions // tasks)
            elapsed = time.perf_counter() - start
            group.cancel_scope.cancel()
    return transactions // tasks * tasks / elapsed


async def cross_bench(dsn: str, args: argparse.Namespace) -> None:
    for notify in (False, True):
        samples = await cross_latency(dsn, args.cross, notify=notify)
        how = "LISTEN/NOTIFY" if notify else "polling every 1 s"
        print(
            f"postgres  cross-process latency, {how:17}: p50 {percentile(samples, 0.5):7.2f} ms, "
            f"p99 {percentile(samples, 0.99):7.2f} ms ({len(samples)} samples)"
        )
    for tasks in (1, 4):
        # Alternated, so a noisy neighbour weighs on both alike.
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.runs):
            for notify in (False, True):
                rate = await commit_rate(dsn, args.transactions, notify=notify, tasks=tasks)
                rates[notify].append(rate)
        for notify in (False, True):
            how = "with pg_notify" if notify else "no notify"
            print(
                f"postgres  commits, {tasks} task(s), {how:14}: "
                f"{statistics.median(rates[notify]):>9,.0f} units of work/s"
            )


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(name: str, open_store: OpenStore, args: argparse.Namespace) -> None:
    for per in (1, 10):
        rate = await commit_throughput(open_store, args.transactions, per)
        print(f"{name:9} commit {per:>2} msg/tx, relayed: {rate:>9,.0f} messages/s")
    rates = [await relay_throughput(open_store, args.relayed, args.batch) for _ in range(args.runs)]
    print(
        f"{name:9} relay flush (batch {args.batch}):   {statistics.median(rates):>9,.0f} messages/s"
    )
    rates = [
        await relay_to_transport(open_store, args.relayed, args.batch) for _ in range(args.runs)
    ]
    print(
        f"{name:9} relay flush to InMemoryTransport: {statistics.median(rates):>9,.0f} messages/s"
    )
    for notify in (True, False):
        samples = await latency(open_store, args.latency, notify=notify, poll=args.poll)
        how = "in-process flush" if notify else f"polling every {args.poll * 1000:.0f} ms"
        print(
            f"{name:9} latency, {how:22}: p50 {percentile(samples, 0.5):6.2f} ms, "
            f"p99 {percentile(samples, 0.99):6.2f} ms"
        )


async def main(args: argparse.Namespace) -> None:
    print(f"python {sys.version.split()[0]}, anyio backend {args.backend}")
    if not args.cross_only:
        await bench("sqlite", sqlite, args)
    try:
        import psycopg

        psycopg.connect(args.dsn, connect_timeout=3).close()
    except Exception as error:  # noqa: BLE001  # a benchmark without the server still runs
        print(f"postgres  left out: {error}".strip())
        return
    if not args.cross_only:
        await bench("postgres", postgres(args.dsn), args)
    await cross_bench(args.dsn, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--relayed", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--latency", type=int, default=500)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cross", type=int, default=60)
    parser.add_argument("--cross-only", action="store_true", help="only the cross-process part")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    arguments = parser.parse_args()
    anyio.run(main, arguments, backend=arguments.backend)
