"""Process-manager messages per second on PostgreSQL, against plain handlers in the same run.

    python benchmarks/process.py [--instances 150] [--steps 3] [--hot 300]
                                 [--concurrency 8] [--runs 3] [--dsn DSN]

Every message is a command sent on a bus whose outbox, inbox (idempotency in inbox
mode) and process store are on one ``PostgresDatabase`` (a pool of 4); ``--concurrency``
tasks send at once; each run of a message commits its own transaction, and each step
publishes one event through the outbox (the relay delivers it in-process; the run
ends when the relay has drained). The figure is messages per second from the first
send to the drained relay. Scenarios:

- parallel: ``--instances`` instances, each opened by one message and continued by
  ``--steps`` more (the state counts them), the instances spread over the tasks.
- hot: one instance, ``--hot`` steps sent by every task at once (the row lock
  serialises them: ``SELECT ... FOR UPDATE``).
- racing starts: rounds of ``--concurrency`` opens of one new key at once; one starts
  it, the others meet a conflict, run again and find it.

The floors, the same messages on the same bus set-up with the same event published:

- plain handler: a command handler in a unit of work with the inbox, no state (what a
  process manager adds is its load and save of the instance).
- hand-written hot row (hot only): the plain handler also runs ``UPDATE ... SET count =
  count + 1`` on one row, as an application would keep a counter without a manager.

Conflicts are counted (the manager's re-runs). Scenarios and floors alternate, ``--runs``
times each, and the median is reported with its ratio to the floor. PostgreSQL is the
local test server (``--dsn``), a schema of its own per measurement, dropped after.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import attrs

from messagebus import Command, Context, Event, MessageBus
from messagebus.middleware import IdempotencyMiddleware, UnitOfWorkMiddleware
from messagebus.postgres import PostgresDatabase
from messagebus.process import Process, ProcessManager

DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/test"


@attrs.frozen
class Open(Command[None], name="bench.pm.open"):
    key: str


@attrs.frozen
class Step(Command[None], name="bench.pm.step"):
    key: str


@attrs.frozen
class Stepped(Event, name="bench.pm.stepped"):
    key: str
    count: int


@attrs.define
class Tally:
    key: str
    count: int = 0


@attrs.define
class Run:
    """One measurement's bus and what it counted."""

    bus: MessageBus
    schema: str
    conflicts: int = 0


Setup = Callable[[MessageBus, PostgresDatabase, Run], Awaitable[None]]


async def with_manager(bus: MessageBus, database: PostgresDatabase, run: Run) -> None:
    """Register the tally process manager, counting its re-runs after conflicts."""
    tally = ProcessManager("bench.tally", Tally, max_conflicts=1000)

    @tally.starts(Open, correlate=lambda command: command.key)
    async def opened(command: Open, process: Process[Tally]) -> Tally:
        return Tally(command.key)

    @tally.handles(Step, correlate=lambda command: command.key)
    async def step(state: Tally, command: Step, process: Process[Tally]) -> None:
        state.count += 1
        process.publish(Stepped(state.key, state.count))

    async def rerun(seconds: float) -> None:
        run.conflicts += 1
        await anyio.sleep(seconds)

    tally.register(bus, store=database.processes(), inbox=database.idempotency(), sleep=rerun)


def plain(*, hot_row: bool) -> Setup:
    """The floor: the same commands to plain handlers in a unit of work with the inbox."""

    async def setup(bus: MessageBus, database: PostgresDatabase, run: Run) -> None:
        inbox = database.idempotency()
        table = f'"{run.schema}".tally'

        async def opened(command: Open, ctx: Context[Open]) -> None:
            if hot_row:
                await ctx.unit_of_work.execute(
                    f"INSERT INTO {table} VALUES (%s, 0) ON CONFLICT DO NOTHING", [command.key]
                )

        async def step(command: Step, ctx: Context[Step]) -> None:
            count = 0
            if hot_row:
                rows = await ctx.unit_of_work.fetch(
                    f"UPDATE {table} SET count = count + 1 WHERE key = %s RETURNING count",
                    [command.key],
                )
                count = rows[0][0]
            ctx.publish(Stepped(command.key, count))

        def middleware() -> list[Any]:
            return [UnitOfWorkMiddleware(bus), IdempotencyMiddleware(inbox, inbox=True)]

        bus.handler(Open, opened, middleware=middleware())
        bus.handler(Step, step, middleware=middleware())

    return setup


@asynccontextmanager
async def running(dsn: str, setup: Setup) -> AsyncIterator[Run]:
    """A bus on a new schema, set up by ``setup``; the schema is dropped after."""
    import psycopg
    from psycopg import sql

    schema = f"bench_process_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        connection.execute(
            sql.SQL("CREATE TABLE {}.tally (key text PRIMARY KEY, count int)").format(
                sql.Identifier(schema)
            )
        )
    try:
        database = PostgresDatabase(dsn, schema=schema)
        bus = MessageBus(outbox=database.outbox(), service="bench")
        run = Run(bus, schema)
        bus.subscriber(Stepped, lambda event: None, name="bench-stepped")
        async with database:
            await setup(bus, database, run)
            async with bus:
                yield run
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def at_once(concurrency: int, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async with anyio.create_task_group() as tasks:
        for _ in range(concurrency):
            tasks.start_soon(work)


async def drained(run: Run) -> None:
    assert run.bus.relay is not None
    await run.bus.relay.drain()


async def parallel(run: Run, args: argparse.Namespace) -> int:
    """Open and step ``instances`` instances, each task working through its own."""
    keys = iter(range(args.instances))

    async def work() -> None:
        for n in keys:  # shared: each instance goes to one task
            await run.bus.send(Open(f"k{n}"))
            for _ in range(args.steps):
                await run.bus.send(Step(f"k{n}"))

    await at_once(args.concurrency, work)
    await drained(run)
    return int(args.instances) * (1 + int(args.steps))


async def hot(run: Run, args: argparse.Namespace) -> int:
    """Step one instance from every task at once (opened before the clock starts)."""
    steps = iter(range(args.hot))

    async def work() -> None:
        for _ in steps:
            await run.bus.send(Step("hot"))

    await at_once(args.concurrency, work)
    await drained(run)
    return int(args.hot)


async def racing_starts(run: Run, args: argparse.Namespace) -> int:
    """Rounds of ``concurrency`` opens of one new key at once."""
    concurrency = int(args.concurrency)
    rounds = max(1, int(args.hot) // concurrency)
    for n in range(rounds):
        await at_once(args.concurrency, partial(run.bus.send, Open(f"race-{n}")))
    await drained(run)
    return rounds * concurrency


Scenario = Callable[[Run, argparse.Namespace], Awaitable[int]]


async def measure(
    dsn: str, setup: Setup, scenario: Scenario, args: argparse.Namespace
) -> tuple[float, int]:
    """Return (messages per second, conflicts) of one scenario on a new schema."""
    async with running(dsn, setup) as run:
        if scenario is hot:
            await run.bus.send(Open("hot"))
        start = time.perf_counter()
        count = await scenario(run, args)
        elapsed = time.perf_counter() - start
    return count / elapsed, run.conflicts


async def compare(
    name: str, scenario: Scenario, floors: list[tuple[str, Setup]], args: argparse.Namespace
) -> None:
    rates: dict[str, list[float]] = {"process manager": []}
    conflicts: list[int] = []
    for floor, _ in floors:
        rates[floor] = []
    for _ in range(args.runs):
        rate, conflicted = await measure(args.dsn, with_manager, scenario, args)
        rates["process manager"].append(rate)
        conflicts.append(conflicted)
        for floor, setup in floors:
            rates[floor].append((await measure(args.dsn, setup, scenario, args))[0])
    manager = statistics.median(rates["process manager"])
    print(f"{name}: process manager {manager:8.0f} msg/s (conflicts re-run: {conflicts})")
    for floor, _ in floors:
        rate = statistics.median(rates[floor])
        print(f"    floor {floor:<28} {rate:8.0f} msg/s   manager / floor = {manager / rate:.2f}")


async def main(args: argparse.Namespace) -> None:
    print(f"PostgreSQL, pool of 4, {args.concurrency} tasks sending, median of {args.runs} runs")
    floor = ("plain handler", plain(hot_row=False))
    await compare(
        f"parallel: {args.instances} instances x {1 + args.steps} messages",
        parallel,
        [floor],
        args,
    )
    await compare(
        f"hot: one instance, {args.hot} steps",
        hot,
        [floor, ("hand-written hot row", plain(hot_row=True))],
        args,
    )
    await compare(
        f"racing starts: rounds of {args.concurrency} opens of one key",
        racing_starts,
        [floor],
        args,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=150)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--hot", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    anyio.run(main, parser.parse_args())
