"""Throughput of the idempotency stores: claim + complete per second, in one run.

    python benchmarks/stores.py [--n 2000] [--concurrency 1 --concurrency 8] [--dsn DSN]

Each operation is what the idempotency middleware does for a new message: ``claim`` a
fresh key, then ``complete`` it with a small JSON result. Stores: in memory, SQLite (a
file in a temporary directory) and PostgreSQL (``--dsn``, default the local test server;
left out with a note if it cannot be reached). Each runs with 1 task and with several
concurrent tasks; the figure is operations per second (median of ``--runs``) and the
ratio to the in-memory store measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio

from messagebus.extension import IdempotencyStore
from messagebus.idempotency import (
    Claimed,
    InMemoryIdempotencyStore,
    PostgresIdempotencyStore,
    SQLiteIdempotencyStore,
)

DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/test"


@asynccontextmanager
async def memory() -> AsyncIterator[IdempotencyStore]:
    yield InMemoryIdempotencyStore()


@asynccontextmanager
async def sqlite() -> AsyncIterator[IdempotencyStore]:
    with tempfile.TemporaryDirectory() as scratch:
        async with SQLiteIdempotencyStore(Path(scratch) / "bench.sqlite3") as store:
            yield store


def postgres(dsn: str) -> Callable[[], AbstractAsyncContextManager[IdempotencyStore]]:
    @asynccontextmanager
    async def open_store() -> AsyncIterator[IdempotencyStore]:
        # A table of its own per run, dropped after, so runs never see each other's keys.
        table = f"bench_idempotency_{uuid.uuid4().hex[:12]}"
        async with PostgresIdempotencyStore(dsn, table=table) as store:
            try:
                yield store
            finally:
                import psycopg

                with psycopg.connect(dsn, autocommit=True) as connection:
                    connection.execute(f"DROP TABLE IF EXISTS {table}")
                    connection.execute(
                        "DELETE FROM messagebus_schema WHERE table_name = %s", [table]
                    )

    return open_store


async def claim_and_complete(store: IdempotencyStore, n: int, concurrency: int) -> float:
    """Return seconds for ``n`` claim+complete pairs spread over ``concurrency`` tasks."""
    run = uuid.uuid4().hex

    async def worker(offset: int) -> None:
        for i in range(offset, n, concurrency):
            outcome = await store.claim("bench", f"{run}-{i}", "fingerprint", 60.0)
            assert isinstance(outcome, Claimed)
            await store.complete("bench", f"{run}-{i}", outcome.token, '{"ok":true}', 3600.0)

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for offset in range(concurrency):
            tasks.start_soon(worker, offset)
    return time.perf_counter() - started


async def main_async(args: argparse.Namespace) -> None:
    stores: dict[str, Callable[[], AbstractAsyncContextManager[IdempotencyStore]]] = {
        "memory": memory,
        "sqlite": sqlite,
    }
    try:
        import psycopg

        psycopg.connect(args.dsn, connect_timeout=3).close()
        stores["postgresql"] = postgres(args.dsn)
    except Exception as exc:  # noqa: BLE001  # any failure to connect: leave it out, say so
        print(f"PostgreSQL left out ({args.dsn}): {exc}", file=sys.stderr)
    print("| store | " + " | ".join(f"{c} task(s)" for c in args.concurrency) + " |")
    print("|---|" + "---|" * len(args.concurrency))
    figures: dict[str, dict[int, float]] = {}
    for name, open_store in stores.items():
        figures[name] = {}
        for concurrency in args.concurrency:
            samples: list[float] = []
            async with open_store() as store:
                await claim_and_complete(store, min(args.n, 200), concurrency)  # warm up
                for _ in range(args.runs):
                    samples.append(args.n / await claim_and_complete(store, args.n, concurrency))
            figures[name][concurrency] = statistics.median(samples)
        cells = [
            f"{figures[name][c]:,.0f}/s (x{figures['memory'][c] / figures[name][c]:.1f})"
            for c in args.concurrency
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        f"\nclaim + complete of a new key; N={args.n} per run, median of {args.runs} runs; "
        "(xR) = how many times slower than the in-memory store."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or [1, 8]
    anyio.run(main_async, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
