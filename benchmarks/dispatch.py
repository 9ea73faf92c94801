"""Dispatch throughput of the bus against the floor and against peers, in one run.

    python benchmarks/dispatch.py [--n 50000] [--runs 7] [--json PATH] [--no-peers]

Scenarios (no-op handlers; messages built before timing):
    S1  send N commands one at a time, one handler each
    S2  publish N events, one subscriber
    S3  publish N events, ten subscribers
    S4  S1 with three no-op middlewares; its floor is the same three composed by hand
    S5  S1 with the logging middleware installed, its lines filtered out by level (a
        successful run then builds no line, so no ids are made either)
    S1+retry, S3+retry   S1 and S3 with the retry middleware installed and no failures
        (S1's command handler opted in, declared idempotent)
    S1+idempotency  S1 with the idempotency middleware on the in-memory store, every
        message new (its key is its message id)
    S1+duplicates   the same, every message a duplicate of one already handled (one
        idempotency key, one payload): the stored result comes back
    Each of these also reports its cost relative to the plain scenario it extends,
    measured in the same rounds.

With S1+idempotency measured, a second table gives microseconds per command through
the idempotency middleware with each store (in memory, SQLite in a temporary file,
PostgreSQL at ``--dsn``, left out with a note if unreachable), first executions and
duplicates, in the same run (wall clock: the SQL stores wait on I/O; ``--store-n``
commands each, median of the rounds).

The floor is the least any dispatcher can do: look up ``type(message)`` in a dict and
await the handler(s), inline in the loop (one coroutine frame per message). The second
floor, "floor, await dispatch(m)", puts the same look-up in an ``async def dispatch(m)``
that awaits the handler(s): two coroutine frames, the least any ``await bus.send(m)``
API can cost. Every runner is reported against both (``xR / xR2``). The row "messagebus,
sync handlers" is the same bus with plain ``def`` handlers, which it calls without any
coroutine: the like-for-like comparison with synchronous peers (pymessagebus). Every
runner runs once per round, rounds interleave the runners (so drift on a shared machine
hits all of them alike), and each figure is the median of the rounds. The ratio is
runner time / floor time *of the same scenario*: 1.0 is the floor, 2.0 is twice its
cost. Peers (``pip install -e .[bench]``)
run in the same rounds. Times are CPU time of this process.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import attrs
import structlog

from messagebus import Command, Envelope, Event, Message, MessageBus
from messagebus.extension import CallNext
from messagebus.idempotency import InMemoryIdempotencyStore
from messagebus.middleware import IdempotencyMiddleware, LoggingMiddleware, RetryMiddleware
from messagebus.retry import RetryPolicy

Runner = Callable[[], Awaitable[None]]
SCENARIOS = (
    "S1",
    "S2",
    "S3",
    "S4",
    "S5",
    "S1+retry",
    "S3+retry",
    "S1+idempotency",
    "S1+duplicates",
)
# Scenarios measured against another bus scenario in the same rounds.
BASES = {"S1+retry": "S1", "S3+retry": "S3", "S1+idempotency": "S1", "S1+duplicates": "S1"}


@attrs.frozen
class Ping(Command[int], name="bench.ping"):
    n: int


@attrs.frozen
class Pinged(Event, name="bench.pinged"):
    n: int


async def handle_ping(command: Ping) -> int:
    return command.n


async def on_pinged(event: Pinged) -> None:
    return None


def handle_ping_sync(command: Ping) -> int:
    return command.n


def on_pinged_sync(event: Pinged) -> None:
    return None


async def passthrough(envelope: Envelope[Message], call_next: CallNext) -> Any:
    return await call_next(envelope)


async def raw_passthrough(message: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    return await call_next(message)


def compose_by_hand(layers: list[Any], handler: Any) -> Any:
    """Wrap ``handler`` in ``layers`` with plain closures: the cheapest chain there is."""

    def link(layer: Any, call_next: Any) -> Any:
        return lambda message: layer(message, call_next)

    call = handler
    for layer in reversed(layers):
        call = link(layer, call)
    return call


def floor_runner(scenario: str, n: int) -> Runner:
    """The least a dispatcher can do for ``scenario``."""
    scenario = BASES.get(scenario, scenario)
    if scenario in ("S1", "S5"):
        commands = [Ping(i) for i in range(n)]
        handlers: dict[type, Any] = {Ping: handle_ping}

        async def floor_send() -> None:
            for command in commands:
                await handlers[type(command)](command)

        return floor_send
    if scenario == "S4":
        commands = [Ping(i) for i in range(n)]
        composed: dict[type, Any] = {Ping: compose_by_hand([raw_passthrough] * 3, handle_ping)}

        async def floor_middleware() -> None:
            for command in commands:
                await composed[type(command)](command)

        return floor_middleware
    events = [Pinged(i) for i in range(n)]
    subscribers: dict[type, list[Any]] = {Pinged: [on_pinged] * (10 if scenario == "S3" else 1)}

    async def floor_publish() -> None:
        for event in events:
            for subscriber in subscribers[type(event)]:
                await subscriber(event)

    return floor_publish


def api_floor_runner(scenario: str, n: int) -> Runner:
    """The floor behind an ``await dispatch(m)`` call: two coroutine frames per message."""
    scenario = BASES.get(scenario, scenario)
    if scenario in ("S1", "S4", "S5"):
        commands = [Ping(i) for i in range(n)]
        handler = handle_ping
        if scenario == "S4":
            handler = compose_by_hand([raw_passthrough] * 3, handle_ping)
        handlers: dict[type, Any] = {Ping: handler}

        async def dispatch_command(command: Any) -> Any:
            return await handlers[type(command)](command)

        async def floor_send() -> None:
            for command in commands:
                await dispatch_command(command)

        return floor_send
    events = [Pinged(i) for i in range(n)]
    subscribers: dict[type, list[Any]] = {Pinged: [on_pinged] * (10 if scenario == "S3" else 1)}

    async def dispatch_event(event: Any) -> None:
        for subscriber in subscribers[type(event)]:
            await subscriber(event)

    async def floor_publish() -> None:
        for event in events:
            await dispatch_event(event)

    return floor_publish


def bus_runner(scenario: str, n: int, *, sync: bool = False) -> Runner:
    """The bus doing ``scenario``, with async handlers or (``sync``) plain functions."""
    retry = RetryMiddleware(commands=RetryPolicy())
    if scenario in ("S1", "S4", "S5", "S1+retry", "S1+idempotency", "S1+duplicates"):
        middleware: list[Any] = {  # type: ignore[assignment]
            "S1": [],
            "S4": [passthrough] * 3,
            "S5": [LoggingMiddleware()],
            "S1+retry": [retry],
            "S1+idempotency": [IdempotencyMiddleware(InMemoryIdempotencyStore())],
            "S1+duplicates": [IdempotencyMiddleware(InMemoryIdempotencyStore())],
        }[scenario]
        bus = MessageBus(middleware=middleware)
        bus.handler(Ping, handle_ping_sync if sync else handle_ping, idempotent=True)
        assert anyio.run(bus.send, Ping(7)) == 7
        if scenario == "S1+duplicates":
            # Every send repeats one handled command under one key.
            assert anyio.run(partial(bus.send, Ping(0), idempotency_key="k")) == 0
            duplicates = [Ping(0)] * n

            async def bus_send_duplicates() -> None:
                send = bus.send
                for command in duplicates:
                    await send(command, idempotency_key="k")

            return bus_send_duplicates
        commands = [Ping(i) for i in range(n)]

        async def bus_send() -> None:
            send = bus.send
            for command in commands:
                await send(command)

        return bus_send
    bus = MessageBus(middleware=[retry] if scenario == "S3+retry" else [])
    for i in range(1 if scenario == "S2" else 10):
        bus.subscriber(Pinged, on_pinged_sync if sync else on_pinged, name=f"subscriber-{i}")
    events = [Pinged(i) for i in range(n)]

    async def bus_publish() -> None:
        publish = bus.publish
        for event in events:
            await publish(event)

    return bus_publish


def peer_runners(scenario: str, n: int) -> dict[str, Runner]:
    """Each installed peer's runner for ``scenario``, where the peer can express it."""
    try:
        peers: Any = importlib.import_module("peers")
    except ImportError:
        return {}
    runners: dict[str, Runner] = {}
    for peer in peers.PEERS:
        if peer.available():
            runner = peer.build(scenario, n)
            if runner is not None:
                runners[peer.NAME] = runner
    return runners


async def measure(runners: dict[str, Runner], runs: int, n: int) -> dict[str, float]:
    """Median ops/s of each runner over ``runs`` interleaved rounds (one warm-up round)."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(runs + 1):
        for name, runner in runners.items():
            gc.collect()
            # CPU time of this process: a shared machine's other load, which only
            # delays us, does not count against whichever runner it lands on.
            started = time.process_time()
            await runner()
            elapsed = time.process_time() - started
            if round_:
                samples[name].append(n / elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}


def configure_quiet_logging() -> None:
    # S5 measures the middleware with its lines filtered out by level, as in production
    # at WARNING: the cost that remains is the ids and the context binding.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=True,
    )


def new_report(n: int, runs: int) -> dict[str, Any]:
    """Return an empty report for ``n`` messages per run and ``runs`` rounds."""
    return {"n": n, "runs": runs, "scenarios": {}, "peers": {}}


def measure_scenario(report: dict[str, Any], scenario: str, *, peers: bool = True) -> None:
    """Measure ``scenario`` (the bus, the floor and, if ``peers``, the peers) into ``report``."""
    n, runs = report["n"], report["runs"]
    runners = {
        "floor": floor_runner(scenario, n),
        "api_floor": api_floor_runner(scenario, n),
        "bus": bus_runner(scenario, n),
        "bus_sync": bus_runner(scenario, n, sync=True),
    }
    if scenario in BASES:
        runners["base"] = bus_runner(BASES[scenario], n)
    if peers:
        runners.update(peer_runners(scenario, n))
    ops = anyio.run(measure, runners, runs, n)
    floor, api_floor = ops.pop("floor"), ops.pop("api_floor")
    bus, bus_sync = ops.pop("bus"), ops.pop("bus_sync")
    if "base" in ops:
        base = ops.pop("base")
        report.setdefault("relative_cost", {})[scenario] = round(base / bus, 2)
        report.setdefault("added_us", {})[scenario] = round(1e6 / bus - 1e6 / base, 2)
    report["scenarios"][scenario] = {
        "ops_per_s": round(bus),
        "floor_ops_per_s": round(floor),
        "api_floor_ops_per_s": round(api_floor),
        "ratio_to_floor": round(floor / bus, 2),
        "ratio_to_api_floor": round(api_floor / bus, 2),
        "sync_handlers": {
            "ops_per_s": round(bus_sync),
            "ratio_to_floor": round(floor / bus_sync, 2),
            "ratio_to_api_floor": round(api_floor / bus_sync, 2),
        },
    }
    for peer, value in ops.items():
        report["peers"].setdefault(peer, {})[scenario] = {
            "ops_per_s": round(value),
            "ratio_to_floor": round(floor / value, 2),
            "ratio_to_api_floor": round(api_floor / value, 2),
        }


async def store_costs(n: int, runs: int, dsn: str) -> dict[str, dict[str, float] | str]:
    """Return us per command through the idempotency middleware with each store."""
    import stores  # benchmarks/stores.py: how each store is opened for a benchmark

    openers: dict[str, Any] = {
        "memory": stores.memory,
        "sqlite": stores.sqlite,
        "postgres": stores.postgres(dsn),
    }
    costs: dict[str, dict[str, float] | str] = {}
    for name, open_store in openers.items():
        try:
            async with open_store() as store:
                costs[name] = await _through_middleware(store, n, runs)
        except OSError as error:  # psycopg's OperationalError is not one: caught below
            costs[name] = f"not measured: {error}"
        except Exception as error:
            if name != "postgres":
                raise
            costs[name] = f"not measured: {type(error).__name__}: {error}"
    return costs


async def _through_middleware(store: Any, n: int, runs: int) -> dict[str, float]:
    """Median us per command for new commands and for duplicates of one handled command."""
    bus = MessageBus(middleware=[IdempotencyMiddleware(store)])
    bus.handler(Ping, handle_ping, idempotent=True)
    await bus.send(Ping(0), idempotency_key="duplicate")
    first, duplicate = [], []
    for _ in range(runs):
        commands = [Ping(i) for i in range(n)]
        started = time.perf_counter()
        for command in commands:
            await bus.send(command)
        first.append((time.perf_counter() - started) / n * 1e6)
        started = time.perf_counter()
        for _ in range(n):
            await bus.send(Ping(0), idempotency_key="duplicate")
        duplicate.append((time.perf_counter() - started) / n * 1e6)
    return {
        "first_us": round(statistics.median(first), 1),
        "duplicate_us": round(statistics.median(duplicate), 1),
    }


def render_store_costs(costs: dict[str, Any]) -> str:
    """Return the per-store figures as a Markdown table."""
    lines = [
        "| IdempotencyMiddleware store | us per new command | us per duplicate |",
        "|---|---|---|",
    ]
    for name, figures in costs.items():
        if isinstance(figures, str):
            lines.append(f"| {name} | {figures} | |")
        else:
            lines.append(f"| {name} | {figures['first_us']} | {figures['duplicate_us']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="messages per run")
    parser.add_argument("--runs", type=int, default=7, help="timed rounds (median)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--no-peers", action="store_true", help="measure the bus only")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--store-n", type=int, default=500, help="commands per store run")
    parser.add_argument(
        "--dsn", default="postgresql://root@127.0.0.1:5432/test", help="PostgreSQL for stores"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    configure_quiet_logging()

    report = new_report(args.n, args.runs)
    for scenario in args.scenario or SCENARIOS:
        measure_scenario(report, scenario, peers=not args.no_peers)
    print(render(report))
    if "S1+idempotency" in report["scenarios"]:
        report["idempotency_stores"] = anyio.run(store_costs, args.store_n, args.runs, args.dsn)
        print()
        print(render_store_costs(report["idempotency_stores"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def render(report: dict[str, Any]) -> str:
    """Return the figures as a Markdown table: ops/s and ratio to the floor."""
    scenarios = list(report["scenarios"])

    def cell(figures: dict[str, Any] | None) -> str:
        if figures is None:
            return "n/a"
        return (
            f"{figures['ops_per_s']:,}/s "
            f"(x{figures['ratio_to_floor']} / x{figures['ratio_to_api_floor']})"
        )

    def row(name: str, cells: list[str]) -> str:
        return f"| {name} | " + " | ".join(cells) + " |"

    lines = [
        row("runner", scenarios),
        "|---|" + "---|" * len(scenarios),
        row("floor", [f"{report['scenarios'][s]['floor_ops_per_s']:,}/s" for s in scenarios]),
        row(
            "floor, await dispatch(m)",
            [f"{report['scenarios'][s]['api_floor_ops_per_s']:,}/s" for s in scenarios],
        ),
        row("**messagebus**", [cell(report["scenarios"][s]) for s in scenarios]),
        row(
            "messagebus, sync handlers",
            [cell(report["scenarios"][s]["sync_handlers"]) for s in scenarios],
        ),
    ]
    for peer, figures in report["peers"].items():
        lines.append(row(peer, [cell(figures.get(s)) for s in scenarios]))
    for scenario, cost in report.get("relative_cost", {}).items():
        added = report["added_us"][scenario]
        lines.append(
            f"{scenario}: x{cost} the cost of {BASES[scenario]} in the same rounds, "
            f"{1e6 / report['scenarios'][scenario]['ops_per_s']:.2f} us per dispatch "
            f"({added:+.2f} us)"
        )
    lines.append("")
    lines.append(
        f"N={report['n']} per run, median of {report['runs']} interleaved runs; "
        "(xR / xR2) = runner time / floor time, and / the await-dispatch(m) floor's time; "
        "1.0 is the floor."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
