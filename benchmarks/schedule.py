"""Due-time accuracy of scheduled messages: how late the relay delivers them.

    python benchmarks/schedule.py [--samples 40] [--dsn DSN] [--poll 1.0]

One scheduled message at a time, due a random 50 ms to 1.5 s after its commit; the
figure is its lateness, the time from its due time to the relay's delivery (p50, p99,
max), by ``time.time``, the stores' clock. The relay runs ``run()`` with the given poll
interval. Scenarios:

- SQLite, in process: the relay's store commits the row (its commit listener tells the
  relay, which learns the due time from ``until_due`` and sleeps until then).
- PostgreSQL, another store object commits (as another process would), the relay
  learns of the row by LISTEN/NOTIFY, or only by polling (``notify=False``): a row due
  before the next poll is late by up to the poll interval; one due after it is found by
  that poll and waited for.
- The same, with the relay blind to due times (its store hidden behind the plain
  ``OutboxStore`` protocol, as before this change): every row waits for a poll.

The floor is the poll interval: a relay that only polls is late by half of it on
average. Each figure is also given as a fraction of the poll interval, measured in the
same run. PostgreSQL is the local test server (``--dsn``), a schema of its own per run,
dropped after; left out with a note if it cannot be reached.
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
from contextlib import asynccontextmanager
from typing import Any

import anyio

from messagebus.outbox import (
    DeliveryFailure,
    OutboxMessage,
    OutboxRelay,
    PostgresOutbox,
    SQLiteOutbox,
)
from messagebus.outbox._store import OutboxStore, Settlement
from messagebus.transports import Destination

DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/test"

Store = SQLiteOutbox | PostgresOutbox


class Blind:
    """An outbox store seen only through :class:`OutboxStore`: no due-time wake-ups."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def transaction(self) -> Any:
        return self._store.transaction()

    def on_commit(self, listener: Callable[[Sequence[str]], None]) -> None:
        self._store.on_commit(listener)

    async def claim(self, owner: str, **options: Any) -> Any:
        return await self._store.claim(owner, **options)

    async def settle(self, owner: str, settlement: Settlement) -> None:
        await self._store.settle(owner, settlement)

    async def cleanup(self, retention: float, *, limit: int = 1000) -> int:
        return await self._store.cleanup(retention, limit=limit)


class Sink:
    """A Deliver that stamps each delivery with ``time.time()`` and signals it."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.arrived = anyio.Event()

    async def __call__(self, batch: Sequence[OutboxMessage]) -> Sequence[DeliveryFailure]:
        now = time.time()
        for message in batch:
            self.at[message.id] = now
        self.arrived.set()
        return []

    async def wait_for(self, message_id: str) -> float:
        with anyio.fail_after(30):
            while message_id not in self.at:
                await self.arrived.wait()
                self.arrived = anyio.Event()
        return self.at[message_id]


async def lateness(
    relay_store: OutboxStore, producer: Store, samples: int, poll: float
) -> list[float]:
    """Schedule ``samples`` rows one after another through ``producer``; return lateness (s)."""
    sink = Sink()
    relay = OutboxRelay(relay_store, sink, poll_interval=poll)
    relay_store.on_commit(relay.notify)
    late = []
    rng = random.Random(17)
    async with anyio.create_task_group() as tasks:
        await tasks.start(relay.run)
        for _ in range(samples):
            due = time.time() + rng.uniform(0.05, 1.5)
            row = OutboxMessage(
                id=uuid.uuid4().hex, destination=Destination.topic("t"), body=b"x", due_at=due
            )
            async with producer.transaction() as tx:
                tx.add(row)
            late.append(await sink.wait_for(row.id) - due)
        tasks.cancel_scope.cancel()
    return late


def report(name: str, late: list[float], poll: float) -> None:
    cuts = statistics.quantiles(late, n=100, method="inclusive")
    p50, p99 = cuts[49], cuts[98]
    print(
        f"{name:<44} p50 {p50 * 1000:7.1f} ms ({p50 / poll:5.3f} poll)  "
        f"p99 {p99 * 1000:7.1f} ms ({p99 / poll:5.3f} poll)  max {max(late) * 1000:7.1f} ms"
    )


@asynccontextmanager
async def postgres_schema(dsn: str) -> AsyncIterator[str]:
    import psycopg
    from psycopg import sql

    schema = f"bench_schedule_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def main(args: argparse.Namespace) -> None:
    poll, samples = args.poll, args.samples
    print(f"lateness of {samples} scheduled messages each, poll interval {poll} s")
    with tempfile.TemporaryDirectory() as scratch:
        async with SQLiteOutbox(f"{scratch}/bench.sqlite3") as store:
            report("SQLite, in process", await lateness(store, store, samples, poll), poll)
    try:
        import psycopg

        psycopg.connect(args.dsn, connect_timeout=5).close()
    except Exception as error:  # noqa: BLE001  # a benchmark notes what it could not run
        print(f"PostgreSQL left out: {error}", file=sys.stderr)
        return

    def blind(store: Store) -> OutboxStore:
        return Blind(store)  # type: ignore[return-value]  # the relay's part of the protocol

    scenarios: list[tuple[str, bool, Callable[[Store], OutboxStore]]] = [
        ("PostgreSQL, other process, LISTEN/NOTIFY", True, lambda store: store),
        ("PostgreSQL, other process, polling", False, lambda store: store),
        ("PostgreSQL, other process, blind relay", False, blind),
    ]
    for name, notify, view in scenarios:
        async with (
            postgres_schema(args.dsn) as schema,
            PostgresOutbox(args.dsn, schema=schema, notify=notify) as relay_side,
            PostgresOutbox(args.dsn, schema=schema, notify=notify) as producer,
        ):
            late = await lateness(view(relay_side), producer, samples, poll)
            report(name, late, poll)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    anyio.run(main, parser.parse_args())
